"""The account test ("Test settings") through the C ABI from a script host
(ctypes): every step passing, a step failing alone with a German message
and hint, a revoked grant failing every step with CONSENT_REQUIRED, and a
host store whose callbacks run only on the thread that began the test.
"""

from __future__ import annotations

import threading

import pytest

import mailoauth_ctypes as mo
from stackutil import auto_consent, make_config, need

CAROL = "carol@contoso.test"


@pytest.fixture
def carol(ctx, idp, lib, need_consent):
    need(lib, "mailoauth_account_test_begin")
    auto_consent(ctx, idp, account=CAROL)
    return ctx


def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def by_step(steps):
    return {s["step"]: s for s in steps}


def test_every_step_passes_and_no_secret_shows(carol, idp):
    with carol.account_test_begin({"account": CAROL}) as op:
        assert op.wait(60000) == mo.OK
        info = op.info()
        result = op.result()
    assert info["state"] == "done"
    steps = result["steps"]
    assert [s["step"] for s in steps] == ["token", "smtp", "imap", "pop3"]
    for s in steps:
        assert s["code"] == mo.OK and s["name"] == "OK", s
        assert s["message"] and isinstance(s["ms"], int)
    assert by_step(steps)["pop3"]["server_reply"].startswith("+OK")
    text = repr(result) + repr(info)
    for secret in idp.secrets():
        assert secret not in text


def test_one_failing_step_does_not_stop_the_others_and_speaks_german(lib, stack, cache_dir, idp, need_consent):
    need(lib, "mailoauth_account_test_begin")
    cfg = make_config(stack, cache_dir, language="de")
    cfg["servers"]["imap"] = {"host": "127.0.0.1", "port": closed_port(), "security": "tls"}
    ctx = lib.context(cfg)
    try:
        auto_consent(ctx, idp, account=CAROL)
        steps = by_step(ctx.account_test({"account": CAROL}, 60000))
        assert steps["imap"]["code"] == mo.NETWORK and steps["imap"]["name"] == "NETWORK"
        assert "servers.imap" in steps["imap"]["hint"]
        assert "prüfen" in steps["imap"]["hint"]
        assert steps["token"]["code"] == steps["smtp"]["code"] == steps["pop3"]["code"] == mo.OK
    finally:
        ctx.free()


def test_a_revoked_grant_fails_every_step_with_consent_required(carol, idp):
    idp.revoke_refresh_tokens(user=CAROL)
    # The refresh that a rejected token would trigger: the provider answers
    # invalid_grant and the account is marked as needing consent.
    with pytest.raises(mo.MailOAuthError) as e:
        carol.token_get(CAROL, "smtp", flags=mo.TOKEN_FORCE_REFRESH)
    assert e.value.code == mo.CONSENT_REQUIRED
    steps = carol.account_test({"account": CAROL}, 60000)
    assert [s["step"] for s in steps] == ["token", "smtp", "imap", "pop3"]
    for s in steps:
        assert s["code"] == mo.CONSENT_REQUIRED, s
        assert s["name"] == "CONSENT_REQUIRED"
        assert s["message"]


def test_host_store_callbacks_run_on_the_beginning_thread(lib, config, idp, need_consent):
    need(lib, "mailoauth_account_test_begin")
    ctx = lib.context(config)
    blobs, threads = {}, set()

    def load(key, sink):
        threads.add(threading.get_ident())
        if key in blobs:
            lib.blob_set(sink, blobs[key])
        return 0

    def save(key, data):
        threads.add(threading.get_ident())
        if data:
            blobs[key] = data
        else:
            blobs.pop(key, None)
        return 0

    def lock(key, do_lock, timeout_ms):
        threads.add(threading.get_ident())
        return 0

    try:
        ctx.set_store(load, save, lock)
        auto_consent(ctx, idp, account=CAROL)
        threads.clear()
        steps = ctx.account_test({"account": CAROL}, 60000)
        assert [s["code"] for s in steps] == [mo.OK] * 4, steps
        assert threads == {threading.get_ident()}
    finally:
        ctx.free()
