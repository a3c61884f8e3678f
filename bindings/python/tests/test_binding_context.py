"""The context: configuration as dict, text or bytes; describe without
secrets; the context manager freeing the handle (a stale pointer is refused
by the library); cancel and close from another thread while a call blocks
(an SMTP server that never greets); close from inside a callback refused;
one context shared by threads."""

from __future__ import annotations

import ctypes
import json
import logging
import socket
import threading

import pytest

import mailoauth
from binding_helpers import ALICE, eventually, in_thread, sign_in
from mailoauth import MailOAuthError, MemoryStore


def test_configuration_as_dict_text_or_bytes(lib, offline_config):
    for cfg in (offline_config, json.dumps(offline_config), json.dumps(offline_config).encode()):
        with mailoauth.Context(cfg, library=lib) as c:
            d = c.describe()
            assert d["client_id"] == offline_config["client_id"] and d["tenant"] == "contoso.com"


def test_describe_never_shows_the_client_secret(lib, offline_config):
    cfg = dict(offline_config, client_secret="very-secret-value-123")
    with mailoauth.Context(cfg, library=lib) as c:
        assert "very-secret-value-123" not in json.dumps(c.describe())


def test_the_context_manager_frees_the_handle(lib, offline_config):
    with mailoauth.Context(offline_config, library=lib) as c:
        assert repr(c).startswith("<mailoauth context 0x")
        stale = ctypes.c_void_p(c.handle.value)
    assert c.closed and c.handle is None and "closed" in repr(c)
    out = ctypes.c_void_p(0x5E5E)
    assert lib.raw.mailoauth_context_describe(stale, ctypes.byref(out)) == mailoauth.INVALID_ARGUMENT
    assert out.value == 0x5E5E and lib.last_error()["code"] == mailoauth.INVALID_ARGUMENT


def test_an_exception_inside_the_with_block_still_frees(lib, offline_config):
    with pytest.raises(ZeroDivisionError):
        with mailoauth.Context(offline_config, library=lib) as c:
            raise ZeroDivisionError("in the with block")
    assert c.closed


@pytest.fixture
def silent_smtp():
    """A TCP listener that accepts and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def stuck(lib, config, idp, silent_smtp):
    """A signed-in context whose SMTP server never greets: a send blocks."""
    cfg = dict(config)
    cfg["servers"] = dict(config["servers"], smtp={"host": "127.0.0.1", "port": silent_smtp, "security": "none"})
    c = mailoauth.Context(cfg, library=lib)
    sign_in(c, idp, ALICE, ("smtp",))
    yield c
    c.close()


def _sender(c):
    return in_thread(lambda: c.smtp_send({"account": ALICE, "timeout_ms": 120_000,
                                          "message": {"to": ["x@contoso.test"], "subject": "s", "text": "t"}}))


def test_cancel_from_another_thread(stuck):
    t, out = _sender(stuck)
    while t.is_alive():  # until the blocked call has seen it
        stuck.cancel()
        t.join(0.05)
    assert out == {"code": mailoauth.CANCELLED}
    assert stuck.token_get(ALICE, "smtp"), "the context goes on working"


def test_close_from_another_thread_cancels_then_frees(stuck):
    t, out = _sender(stuck)
    eventually(lambda: stuck._busy, "the sender is inside smtp_send")
    stuck.close()
    t.join(10)
    assert not t.is_alive() and out == {"code": mailoauth.CANCELLED}
    assert stuck.closed


def test_close_from_inside_a_callback_is_refused(lib, config, caplog):
    holder = {}

    class Closing(MemoryStore):
        def load(self, key):
            holder["ctx"].close()

    with mailoauth.Context(dict(config, cache={"protection": "key"}), library=lib) as c:
        holder["ctx"] = c
        c.set_cache_key(bytes(32))
        c.set_store(Closing())
        with caplog.at_level(logging.WARNING, logger="mailoauth"):
            with pytest.raises(MailOAuthError) as e:
                c.token_get(ALICE, "imap")
        assert e.value.code == mailoauth.CACHE_IO
        assert any("RuntimeError" in r.getMessage() for r in caplog.records)
        assert not c.closed


def test_one_context_many_threads(ctx, idp):
    sign_in(ctx, idp, ALICE)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(ctx.token_get(ALICE, "imap"))
            ctx.describe()
        except BaseException as e:  # noqa: B036
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 160 and len(set(results)) == 1
