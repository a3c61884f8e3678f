"""Helpers of the binding tests: sign-in through the identity imitation,
the stack's maildirs, seeding mail, waiting for a condition (bounded)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import mailoauth
from stackutil import STACK_FILE, Idp, follow_authorize

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "tests" / "stack" / "seed.py"
ALICE = "alice@contoso.test"
BOB = "bob@contoso.test"
CAROL = "carol@contoso.test"


def sign_in(ctx: mailoauth.Context, idp: Idp, account: str = ALICE,
            protocols=("smtp", "imap", "pop3")) -> dict:
    """A browser consent approved at once by the identity imitation (auto_consent)."""
    idp.settings(auto_consent=True)
    with ctx.consent_begin({"account": account, "flow": "browser", "protocols": list(protocols)}) as op:
        r = follow_authorize(op.info()["authorize_url"])
        assert r.status_code == 200, r.text
        assert op.wait(30_000) is True
        return op.result()


def maildir(stack: dict, address: str, folder: Optional[str] = None) -> Path:
    local, domain = address.split("@", 1)
    p = Path(stack["maildir"].replace("%d", domain).replace("%n", local))
    return p / f".{folder}" if folder else p


def stored(stack: dict, address: str) -> Dict[str, bytes]:
    """File name -> bytes of every message in the address's INBOX."""
    out = {}
    for sub in ("new", "cur"):
        d = maildir(stack, address) / sub
        if d.is_dir():
            for f in d.iterdir():
                if not f.name.startswith("."):
                    out[f.name] = f.read_bytes()
    return out


def seed(address: str, count: int, seed_no: int, size: int = 3000) -> None:
    env = dict(os.environ, MAILOAUTH_STACK_FILE=STACK_FILE)
    subprocess.run([sys.executable, str(SEED), "--user", address, "--count", str(count),
                    "--size", str(size), "--seed", str(seed_no)], check=True, capture_output=True, env=env)


def eventually(cond: Callable[[], object], what: str, timeout_s: float = 30) -> object:
    """Polls `cond` until it is truthy; fails the test after `timeout_s` (a bound, not a measurement)."""
    end = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < end, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def in_thread(fn: Callable[[], object]):
    """Runs `fn` in a thread; returns (thread, out) where out gets
    ``{"result": …}`` or ``{"code": …}`` (a MailOAuthError's code)."""
    import threading

    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except mailoauth.MailOAuthError as e:
            out["code"] = e.code

    t = threading.Thread(target=run)
    t.start()
    return t, out


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
