"""Mailboxes through the binding against the stack's Dovecot: poll, fetch
(bytes equal to what was seeded into the maildir), fetch_to_file, ack,
wait, list_folders; cancel of a wait and close from another thread; the
context manager freeing the handle; BUSY for a second holder."""

from __future__ import annotations

import ctypes
import itertools

import pytest

import mailoauth
from binding_helpers import BOB, eventually, in_thread, seed, sign_in, stored
from mailoauth import MailOAuthError

_seeds = itertools.count(int.from_bytes(__import__("os").urandom(2), "big") * 10)


@pytest.fixture
def bob(ctx, idp):
    sign_in(ctx, idp, BOB, ("imap", "pop3"))
    return ctx


def request(proto: str, **extra) -> dict:
    return dict({"account": BOB, "protocol": proto, "start": "new", "lock_timeout_ms": 5000}, **extra)


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_poll_fetch_ack_equal_the_seeded_bytes(bob, stack, tmp_path, proto):
    with bob.mailbox_open(request(proto)) as mb:
        assert mb.poll() == []
        before = set(stored(stack, BOB).values())
        seed(BOB, 3, next(_seeds))
        assert mb.wait(30_000) is True
        got = eventually(lambda: (lambda g: len(g) == 3 and g)(mb.poll(100)), "three new messages")
        seeded = set(stored(stack, BOB).values()) - before
        assert len(seeded) == 3
        fetched = set()
        for m in got:
            body = mb.fetch(m["id"])
            assert isinstance(body, bytes) and len(body) == m["size"]
            fetched.add(body)
        assert fetched == seeded
        mb.fetch_to_file(got[0]["id"], tmp_path / "one.eml")
        assert (tmp_path / "one.eml").read_bytes() == mb.fetch(got[0]["id"])
        for m in got:
            mb.ack(m["id"], "seen" if proto == "imap" else "keep")
        assert mb.poll() == []
        with pytest.raises(MailOAuthError) as e:
            mb.fetch("4242:4242" if proto == "imap" else "no-such-uidl")
        assert e.value.code in (mailoauth.NOT_FOUND, mailoauth.INVALID_ARGUMENT)
    assert mb.closed
    with bob.mailbox_open(request(proto)) as mb:
        assert mb.poll() == [], "acknowledged stays acknowledged"


def test_wait_timeout_and_folders(bob):
    with bob.mailbox_open(request("imap")) as mb:
        mb.poll()
        assert mb.wait(200) is False
        folders = mb.list_folders()
        assert {"name": "INBOX", "delimiter": "/", "special": "inbox"} in folders
    with bob.mailbox_open(request("pop3")) as mb:
        with pytest.raises(MailOAuthError) as e:
            mb.list_folders()
        assert e.value.code != mailoauth.OK


def _waiter(mb):
    return in_thread(lambda: mb.wait(120_000))


def test_cancel_a_wait_from_another_thread(bob):
    with bob.mailbox_open(request("imap")) as mb:
        mb.poll()
        t, out = _waiter(mb)
        while t.is_alive():  # until the waiting call has seen it
            mb.cancel()
            t.join(0.05)
        assert out == {"code": mailoauth.CANCELLED}
        assert mb.poll() == [], "the next call reconnects"


def test_close_from_another_thread_cancels_then_frees(bob):
    mb = bob.mailbox_open(request("imap"))
    mb.poll()
    t, out = _waiter(mb)
    eventually(lambda: mb._busy, "the waiter is inside mailbox_wait")
    mb.close()
    t.join(10)
    assert not t.is_alive() and out == {"code": mailoauth.CANCELLED}
    with pytest.raises(MailOAuthError) as e:
        mb.poll()
    assert e.value.code == mailoauth.INVALID_ARGUMENT and "closed" in e.value.message
    # the poll state was released with the handle
    with bob.mailbox_open(request("imap", lock_timeout_ms=0)) as again:
        assert again.poll() == []


def test_context_manager_frees_the_handle_and_busy(bob, lib):
    with bob.mailbox_open(request("imap")) as mb:
        stale = ctypes.c_void_p(mb.handle.value)
        with pytest.raises(MailOAuthError) as e:
            bob.mailbox_open(request("imap", lock_timeout_ms=100))
        assert e.value.code == mailoauth.BUSY
    assert mb.handle is None
    out = ctypes.c_void_p(0x5E5E)
    assert lib.raw.mailoauth_mailbox_poll(stale, 10, ctypes.byref(out)) == mailoauth.INVALID_ARGUMENT
    assert out.value == 0x5E5E
    with bob.mailbox_open(request("imap", lock_timeout_ms=0)):
        pass


def test_a_forgotten_mailbox_is_freed_by_the_garbage_collector(bob):
    import gc

    mb = bob.mailbox_open(request("imap"))
    mb.poll()
    with pytest.raises(MailOAuthError) as e:
        bob.mailbox_open(request("imap", lock_timeout_ms=0))
    assert e.value.code == mailoauth.BUSY
    del mb
    gc.collect()
    with bob.mailbox_open(request("imap", lock_timeout_ms=2000)) as again:  # the poll state was released
        assert again.poll() == []


def test_bad_mailbox_input(bob):
    with bob.mailbox_open(request("imap")) as mb:
        for bad_id in (None, b"\xff", "1:1\r\n"):
            with pytest.raises(MailOAuthError) as e:
                mb.fetch(bad_id)
            assert e.value.code == mailoauth.INVALID_ARGUMENT
        with pytest.raises(MailOAuthError) as e:
            mb.ack("1:1", "explode")
        assert e.value.code == mailoauth.INVALID_ARGUMENT
        with pytest.raises(TypeError):
            mb.poll("10")
        with pytest.raises(TypeError):
            mb.fetch_to_file("1:1", None)
    with pytest.raises(MailOAuthError) as e:
        bob.mailbox_open({"account": BOB, "protocol": "imap", "server": {"host": "imap.evil.example"}})
    assert e.value.code == mailoauth.UNTRUSTED_HOST
