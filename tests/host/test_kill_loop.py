"""SIGKILL during refreshes. A process refreshing in a loop (forced
refreshes, each one rotating the refresh token) is killed at random moments;
after each kill a fresh process reads the cache and gets a token, first from
the cache and then by a forced refresh (the grant survived).

- Microsoft rotation (an old refresh token stays valid until it expires):
  the grant must survive every kill.
- Strict rotation (single-use refresh tokens): a kill between the server's
  answer and the durable write of the rotated token loses the grant; nothing
  can prevent that, so the test only reports how often it happened.

Processes come from a fork server (child.py forkserver): the library is
loaded once, each child forks from a process that never made a context and
builds its own, which keeps hundreds of kills within the time budget."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, CHILD, auto_consent, read_json_line

KILLS_MICROSOFT = 300
KILLS_STRICT = 100

pytestmark = pytest.mark.usefixtures("need_consent")


class ForkServer:
    def __init__(self, config_file, account):
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, "forkserver", str(config_file), account],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.live = set()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def spawn(self):
        """A fresh refresher: (pid, its first report)."""
        self.send("spawn")
        pid = read_json_line(self.proc, 10)["pid"]
        self.live.add(pid)
        return pid, read_json_line(self.proc, 30)

    def reap(self, pid):
        self.send(f"reap {pid}")
        r = read_json_line(self.proc, 10)
        assert r["reaped"] == pid
        self.live.discard(pid)
        return r

    def close(self):
        for pid in list(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(pid)
        try:
            self.send("quit")
            self.proc.wait(5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def kill_loop(server, kills, rng, on_lost):
    """`kills` rounds of spawn → ready → random 2–40 ms → SIGKILL → reap.
    A child that cannot get a token at start means the previous kill lost
    the grant: `on_lost(report)` decides. Returns (kills done, losses)."""
    done = losses = 0
    while done < kills:
        pid, report = server.spawn()
        if not report.get("ready"):
            server.reap(pid)
            losses += 1
            on_lost(report)
            continue
        time.sleep(rng.uniform(0.002, 0.040))
        os.kill(pid, signal.SIGKILL)
        r = server.reap(pid)
        assert r["signal"] == signal.SIGKILL, r
        done += 1
    # after the last kill: one more fresh process must manage
    pid, report = server.spawn()
    os.kill(pid, signal.SIGKILL)
    server.reap(pid)
    if not report.get("ready"):
        losses += 1
        on_lost(report)
    return done, losses


def test_kill_loop_microsoft_rotation_never_loses_the_grant(lib, ctx, idp, config_file):
    auto_consent(ctx, idp, ALICE, ["imap"])
    rng = random.Random(int(os.environ.get("MAILOAUTH_KILL_SEED", "1")))
    before = idp.grants("refresh_token")
    server = ForkServer(config_file, ALICE)
    lost = []
    try:
        done, losses = kill_loop(server, KILLS_MICROSOFT, rng, lost.append)
    finally:
        server.close()
    refreshes = idp.grants("refresh_token") - before
    print(f"\nkill loop (microsoft rotation): {done} kills, {refreshes} refreshes granted, {losses} grants lost")
    assert losses == 0, lost[:3]
    assert refreshes >= done, "each round refreshed at least once (the start-up check)"
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)


def test_kill_loop_strict_rotation_reports_losses(lib, ctx, idp, config_file):
    idp.settings(rotation="strict")
    auto_consent(ctx, idp, ALICE, ["imap"])
    rng = random.Random(int(os.environ.get("MAILOAUTH_KILL_SEED", "2")))
    server = ForkServer(config_file, ALICE)
    codes = []

    def lost(report):
        # only a refused grant counts as lost; anything else is a failure
        assert report.get("code") == mo.CONSENT_REQUIRED, report
        codes.append(report["error"].get("provider_code"))
        auto_consent(ctx, idp, ALICE, ["imap"])  # the user signs in again

    try:
        done, losses = kill_loop(server, KILLS_STRICT, rng, lost)
    finally:
        server.close()
    print(
        f"\nkill loop (strict rotation): {done} kills, grant lost {losses} times "
        f"({100.0 * losses / max(done, 1):.1f} %), provider codes {sorted(set(map(str, codes)))}"
    )
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
