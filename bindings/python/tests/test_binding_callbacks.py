"""Callbacks from the library into Python: the logger and the host store.
They are kept alive by the binding (no reference of the host's needed), an
exception in one never unwinds into C (the process goes on; the library
sees -1: CACHE_IO, or BUSY for a lock) and is reported on the ``mailoauth``
Python logger, and no secret reaches the logger."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import mailoauth
from binding_helpers import ALICE, sign_in
from mailoauth import MailOAuthError, MemoryStore

KEY = bytes(range(32))


@pytest.fixture
def logger_off(lib):
    yield
    lib.set_logger(mailoauth.LOG_ERROR, None)


def test_logger_receives_messages_and_no_secret(lib, ctx, idp, logger_off):
    lines = []
    lib.set_logger(mailoauth.LogLevel.TRACE, lambda level, msg: lines.append((level, msg)))
    gc.collect()  # the binding keeps the callback alive, not the caller
    sign_in(ctx, idp, ALICE)
    token = ctx.token_get(ALICE, "imap", mailoauth.TOKEN_FORCE_REFRESH)
    lib.set_logger(mailoauth.LOG_ERROR, None)
    assert lines and all(1 <= lvl <= 5 for lvl, _ in lines)
    assert all(isinstance(m, str) and m for _, m in lines)
    text = "\n".join(m for _, m in lines)
    assert token not in text and token[:16] not in text
    for secret in idp.secrets():
        assert secret not in text
    n = len(lines)
    ctx.token_get(ALICE, "imap", mailoauth.TOKEN_FORCE_REFRESH)
    assert len(lines) == n, "no call after the logger was removed"


def test_python_logging_bridge(lib, ctx, idp, logger_off, caplog):
    caplog.set_level(1, logger="mailoauth.native")
    lib.set_logger(mailoauth.LOG_TRACE, mailoauth.python_logging())
    sign_in(ctx, idp, ALICE)
    assert any(r.name == "mailoauth.native" for r in caplog.records)


def test_a_raising_logger_does_not_crash(lib, ctx, idp, logger_off, caplog):
    calls = []

    def bad(level, msg):
        calls.append(level)
        raise RuntimeError("host logger broke")

    lib.set_logger(mailoauth.LOG_TRACE, bad)
    with caplog.at_level(logging.WARNING, logger="mailoauth"):
        sign_in(ctx, idp, ALICE)
        assert ctx.token_get(ALICE, "smtp", True)
    assert len(calls) > 1, "called again after raising"
    warned = [r for r in caplog.records if "logger callback raised RuntimeError" in r.getMessage()]
    assert len(warned) == 1, "reported once per exception type"


def test_a_raising_logger_in_a_fresh_process(lib):
    """The same in a process of its own, also with BaseException: it exits normally."""
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(mailoauth.__file__).parents[1])!r})
        import mailoauth
        lib = mailoauth.Library({lib.path!r})
        def bad(level, msg):
            raise KeyboardInterrupt
        lib.set_logger(mailoauth.LOG_TRACE, bad)
        try:
            mailoauth.Context({{"client_id": "x", "bogus": 1}}, library=lib)
        except mailoauth.MailOAuthError as e:
            print("error", e.code)
        lib.set_logger(mailoauth.LOG_TRACE, None)
        print("alive")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["error", "101", "alive"]


def keyed(config: dict) -> dict:
    return dict(config, cache={"protection": "key"})


def test_host_store_holds_the_grant(lib, config, idp):
    store = MemoryStore()
    with mailoauth.Context(keyed(config), library=lib) as a:
        a.set_cache_key(KEY)
        a.set_store(store)
        sign_in(a, idp, ALICE)
        token = a.token_get(ALICE, "imap")
    assert f"grant:{ALICE}" in store.blobs, sorted(store.blobs)
    assert token.encode() not in store.blobs[f"grant:{ALICE}"], "blobs are protected"
    with mailoauth.Context(keyed(config), library=lib) as b:  # another machine
        b.set_cache_key(KEY)
        b.set_store(store)
        assert b.token_get(ALICE, "imap") == token
        b.account_remove(ALICE)
    assert f"grant:{ALICE}" not in store.blobs


def test_store_callbacks_are_kept_alive(lib, config, idp):
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(MemoryStore())  # no reference kept by the host
        gc.collect()
        sign_in(c, idp, ALICE)
        gc.collect()
        assert c.token_get(ALICE, "imap", True)
        assert [a["account"] for a in c.account_list()] == [ALICE]


class Broken(MemoryStore):
    def __init__(self, fail: str, exc: BaseException):
        super().__init__()
        self.fail, self.exc = fail, exc

    def load(self, key):
        if self.fail == "load":
            raise self.exc
        return super().load(key)

    def save(self, key, data):
        if self.fail == "save":
            raise self.exc
        super().save(key, data)

    def lock(self, key, timeout_ms):
        if self.fail == "lock":
            raise self.exc
        if self.fail == "lock-false":
            return False
        return super().lock(key, timeout_ms)


@pytest.mark.parametrize("exc", [OSError("database gone"), KeyboardInterrupt()])
def test_raising_store_load_is_cache_io(lib, config, exc, caplog):
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(Broken("load", exc))
        with caplog.at_level(logging.WARNING, logger="mailoauth"):
            with pytest.raises(MailOAuthError) as e:
                c.token_get(ALICE, "imap")
        assert e.value.code == mailoauth.CACHE_IO and "-1" in e.value.message
        assert any("load" in r.getMessage() and type(exc).__name__ in r.getMessage() for r in caplog.records)


def test_raising_store_save_fails_the_consent_with_cache_io(lib, config, idp):
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(Broken("save", RuntimeError("disk full")))
        with pytest.raises(MailOAuthError) as e:
            sign_in(c, idp, ALICE)
        assert e.value.code == mailoauth.CACHE_IO


@pytest.mark.parametrize("fail", ["lock", "lock-false"])
def test_a_lock_not_had_or_raising(lib, config, idp, fail):
    store = Broken("", RuntimeError("lock service down"))
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(store)
        sign_in(c, idp, ALICE)
        store.fail = fail
        with pytest.raises(MailOAuthError) as e:
            c.token_get(ALICE, "imap", mailoauth.TOKEN_FORCE_REFRESH)
        assert e.value.code == mailoauth.BUSY, e.value
        assert ("-1" if fail == "lock" else "returned 1") in e.value.message
        store.fail = ""
        assert c.token_get(ALICE, "imap", mailoauth.TOKEN_FORCE_REFRESH), "works again"


def test_back_to_files(lib, config, idp):
    store = MemoryStore()
    with mailoauth.Context(config, library=lib) as c:
        c.set_store(store)
        c.set_store(None)
        sign_in(c, idp, ALICE)
        assert store.blobs == {}
    with mailoauth.Context(config, library=lib) as c:
        assert c.token_get(ALICE, "imap"), "from the cache file"


def test_store_is_used_from_many_threads(lib, config, idp):
    store = MemoryStore()
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(store)
        sign_in(c, idp, ALICE)
        errors = []

        def work():
            try:
                for _ in range(5):
                    c.token_get(ALICE, "imap", True)
            except BaseException as e:  # noqa: B036
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_blob_set_low_level(lib, config, idp):
    """Library.blob_set from a raw load callback (the C shape), and outside one."""
    from mailoauth import _signatures as sig

    with pytest.raises(MailOAuthError) as e:
        lib.blob_set(None, b"abc")
    assert e.value.code == mailoauth.INVALID_ARGUMENT
    blobs: dict = {}

    def load(_ud, key, sink):
        if key.decode() in blobs:
            lib.blob_set(sink, blobs[key.decode()])
        return 0

    def save(_ud, key, data, n):
        blobs[key.decode()] = bytes(data[:n])
        return 0

    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c._register_store(sig.STORE_LOAD_FN(load), sig.STORE_SAVE_FN(save), sig.STORE_LOCK_FN())
        sign_in(c, idp, ALICE)
    with mailoauth.Context(keyed(config), library=lib) as c:
        c.set_cache_key(KEY)
        c.set_store(MemoryStore())
        c.set_store(None)
        c._register_store(sig.STORE_LOAD_FN(load), sig.STORE_SAVE_FN(save), sig.STORE_LOCK_FN())
        assert c.token_get(ALICE, "imap")
    assert f"grant:{ALICE}" in blobs
