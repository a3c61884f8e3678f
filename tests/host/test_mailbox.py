"""Mailboxes through the C ABI from a script host (ctypes): open, poll,
fetch, ack, wait, list_folders, cancel and free against the stack's Dovecot,
with messages seeded straight into the maildir (tests/stack/seed.py).

Covers: a poll + fetch + ack loop over IMAP and POP3 (bytes equal to what
the maildir holds, acknowledged messages never return, also after a
reopen; seen/move/delete visible on the server); cancel from another
thread while a wait blocks (CANCELLED promptly, the next call reconnects);
wait ends when mail arrives; BUSY for a second open; NULL arguments and bad
input (outputs untouched).

The mailbox is bob@ (the SMTP suite sends from carol@); every test opens
with `start: new` and its own cache folder, so mail other suites left in
bob's INBOX is not counted.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

import mailoauth_ctypes as mo
from stackutil import STACK_FILE, auto_consent, need

BOB = "bob@contoso.test"
MAILBOX_EXPORTS = (
    "mailoauth_mailbox_open",
    "mailoauth_mailbox_poll",
    "mailoauth_mailbox_fetch",
    "mailoauth_mailbox_fetch_to_file",
    "mailoauth_mailbox_ack",
    "mailoauth_mailbox_wait",
    "mailoauth_mailbox_list_folders",
    "mailoauth_mailbox_cancel",
    "mailoauth_mailbox_free",
)
SEED = Path(__file__).resolve().parents[1] / "stack" / "seed.py"


# ---- helpers ----------------------------------------------------------------


@pytest.fixture
def bob(ctx, idp, lib, need_consent):
    need(lib, *MAILBOX_EXPORTS)
    auto_consent(ctx, idp, account=BOB, protocols=("imap", "pop3"))
    return ctx


@pytest.fixture(autouse=True)
def _idp_reset_after(idp):
    """auto_consent off again for whatever shares the stack next (the Rust
    tests that run after this suite expect the sign-in page)."""
    yield
    idp.reset()


def seed(count: int, seed_no: int, size: int = 3000) -> None:
    env = dict(os.environ, MAILOAUTH_STACK_FILE=STACK_FILE)
    subprocess.run(
        ["python3", str(SEED), "--user", BOB, "--count", str(count), "--size", str(size),
         "--seed", str(seed_no)],
        check=True, capture_output=True, env=env,
    )


def maildir(stack: dict, folder: str | None = None) -> Path:
    local, domain = BOB.split("@")
    p = Path(stack["maildir"].replace("%d", domain).replace("%n", local))
    return p / f".{folder}" if folder else p


def stored(stack: dict, folder: str | None = None) -> dict:
    """File name -> bytes of every message of a maildir folder."""
    out = {}
    for sub in ("new", "cur"):
        d = maildir(stack, folder) / sub
        if d.is_dir():
            for f in d.iterdir():
                out[f.name] = f.read_bytes()
    return out


def request(proto: str, **extra) -> dict:
    r = {"account": BOB, "protocol": proto, "start": "new", "lock_timeout_ms": 5000}
    r.update(extra)
    return r


# ---- tests --------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_poll_fetch_ack_loop(bob, stack, tmp_path, proto):
    seed_no = int(time.time()) % 100000 + (0 if proto == "imap" else 7)
    with bob.mailbox_open(request(proto)) as mb:
        assert mb.poll(100) == []
        before = set(stored(stack).values())
        seed(5, seed_no)
        assert mb.wait(20000) is True
        got = mb.poll(100)
        assert len(got) == 5
        new_bytes = set(stored(stack).values()) - before
        actions = (["keep", "seen", "delete", "move:Deleted Items", "keep"] if proto == "imap"
                   else ["keep", "seen", "delete", "delete", "keep"])
        fetched = set()
        for entry, action in zip(got, actions):
            assert set(entry) == {"id", "size", "from", "to", "subject", "date", "message_id"}
            body = mb.fetch(entry["id"])
            assert len(body) == entry["size"]
            fetched.add(body)
            mb.ack(entry["id"], action)
        assert fetched == new_bytes
        target = tmp_path / "one.eml"
        mb.fetch_to_file(got[0]["id"], target)
        assert target.read_bytes() in new_bytes
        assert mb.poll(100) == []  # POP3: this poll's QUIT commits the deletions
        left = set(stored(stack).values())
        assert len(new_bytes - left) == 2, "two deleted or moved"
        if proto == "imap":
            assert any(":2," in n and "S" in n.rsplit(":2,", 1)[1]
                       for n, b in stored(stack).items() if b in new_bytes)
            assert len(set(stored(stack, "Deleted Items").values()) & new_bytes) == 1
    with bob.mailbox_open(request(proto)) as mb:
        assert mb.poll(100) == [], "acknowledged messages stay acknowledged after a reopen"


def test_cancel_from_another_thread_during_wait(bob):
    with bob.mailbox_open(request("imap")) as mb:
        mb.poll(100)
        result = {}

        def waiter():
            t = time.monotonic()
            try:
                mb.wait(30000)
                result["rc"] = mo.OK
            except mo.MailOAuthError as e:
                result["rc"] = e.code
            result["took"] = time.monotonic() - t

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.5)
        mb.cancel()
        th.join(10)
        assert not th.is_alive()
        assert result["rc"] == mo.CANCELLED
        assert result["took"] < 5
        # The next call reconnects and works.
        assert mb.poll(10) == []
        assert mb.wait(200) is False
        folders = mb.list_folders()
        assert {"name": "INBOX", "delimiter": "/", "special": "inbox"} in folders
        assert any(f["special"] == "sent" for f in folders)


def test_busy_null_and_bad_input(bob, lib):
    raw = lib.raw
    with bob.mailbox_open(request("imap")) as mb:
        with pytest.raises(mo.MailOAuthError) as e:
            bob.mailbox_open(request("imap", lock_timeout_ms=100))
        assert e.value.code == mo.BUSY
        sentinel = ctypes.c_void_p(0x5E5E5E5E)
        out = ctypes.c_void_p(0x5E5E5E5E)
        assert raw.mailoauth_mailbox_poll(None, 10, ctypes.byref(out)) == mo.INVALID_ARGUMENT
        assert "mb" in lib.last_error()["message"]
        assert raw.mailoauth_mailbox_poll(mb.handle, 10, None) == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_poll(sentinel, 10, ctypes.byref(out)) == mo.INVALID_ARGUMENT
        n = ctypes.c_int64(77)
        assert raw.mailoauth_mailbox_fetch(mb.handle, b"\xff", ctypes.byref(out), ctypes.byref(n)) \
            == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_fetch(mb.handle, b"1:1\r\n", ctypes.byref(out), ctypes.byref(n)) \
            == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_fetch(mb.handle, b"4242:4242", ctypes.byref(out), ctypes.byref(n)) \
            == mo.NOT_FOUND
        assert out.value == 0x5E5E5E5E and n.value == 77, "outputs untouched on failure"
        assert raw.mailoauth_mailbox_ack(mb.handle, b"1:1", b"explode") == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_ack(mb.handle, None, b"keep") == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_wait(None, 0) == mo.INVALID_ARGUMENT
        assert raw.mailoauth_mailbox_cancel(None) == mo.INVALID_ARGUMENT
        raw.mailoauth_mailbox_free(None)
        h = ctypes.c_void_p(0x5E5E5E5E)
        assert raw.mailoauth_mailbox_open(bob.handle, b'{"account": ', ctypes.byref(h)) == mo.INVALID_CONFIG
        assert raw.mailoauth_mailbox_open(bob.handle, json.dumps({"account": BOB, "x": 1}).encode(),
                                          ctypes.byref(h)) == mo.INVALID_CONFIG
        assert raw.mailoauth_mailbox_open(
            bob.handle, json.dumps({"account": BOB, "server": {"host": "imap.evil.example"}}).encode(),
            ctypes.byref(h)) == mo.UNTRUSTED_HOST
        assert h.value == 0x5E5E5E5E
        stale = ctypes.c_void_p(mb.handle.value)
    # freed: the handle is stale now
    assert raw.mailoauth_mailbox_poll(stale, 10, ctypes.byref(out)) == mo.INVALID_ARGUMENT
    raw.mailoauth_mailbox_free(stale)


class DictStore:
    """A host store in a dict with a lock per key (as a database would)."""

    def __init__(self, lib):
        self.lib = lib
        self.blobs: dict[str, bytes] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.lock_calls: list[tuple[str, bool]] = []

    def load(self, key, sink):
        if key in self.blobs:
            self.lib.blob_set(sink, self.blobs[key])
        return 0

    def save(self, key, data):
        if data:
            self.blobs[key] = data
        else:
            self.blobs.pop(key, None)
        return 0

    def lock(self, key, do_lock, timeout_ms):
        with self.guard:
            lk = self.locks.setdefault(key, threading.Lock())
        self.lock_calls.append((key, do_lock))
        if do_lock:
            return 0 if lk.acquire(timeout=max(timeout_ms, 0) / 1000) else 1
        lk.release()
        return 0


def test_poll_state_in_the_host_store(lib, stack, config, idp, need_consent):
    need(lib, *MAILBOX_EXPORTS, "mailoauth_context_set_store")
    store = DictStore(lib)
    key = f"poll:{BOB}/imap/INBOX"
    with lib.context(config) as a, lib.context(config) as b:
        a.set_store(store.load, store.save, store.lock)
        b.set_store(store.load, store.save, store.lock)
        auto_consent(a, idp, account=BOB, protocols=("imap",))
        with a.mailbox_open(request("imap")) as mb:
            assert key in store.blobs, sorted(store.blobs)
            assert (key, True) in store.lock_calls
            # The other context (another machine) waits, then BUSY.
            with pytest.raises(mo.MailOAuthError) as e:
                b.mailbox_open(request("imap", lock_timeout_ms=100))
            assert e.value.code == mo.BUSY
            seed(2, int(time.time()) % 100000 + 31)
            got = mb.poll(100)
            assert len(got) == 2
            mb.ack(got[0]["id"], "keep")
        assert (key, False) in store.lock_calls, "freeing the mailbox unlocks the state"
        # The other machine takes over and sees only what is not acknowledged.
        with b.mailbox_open(request("imap")) as mb:
            assert [m["id"] for m in mb.poll(100)] == [got[1]["id"]]
