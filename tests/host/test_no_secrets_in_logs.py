"""No secret ever leaves the library in text meant for humans: with the
logger at trace level, run consents (browser with auto-consent, device),
token gets, forced refreshes, a retried 503, an injected invalid_grant and
the account list; then every value the IdP knows to be secret (tokens,
codes, device codes, verifiers, client secrets: /admin/secrets), and its
base64, must be absent from every log message, error message, last-error
JSON and account list collected."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, auto_consent

pytestmark = pytest.mark.usefixtures("need_consent")


@pytest.fixture
def logs(lib):
    got = []
    lock = threading.Lock()

    def collect(level, message):
        with lock:
            got.append((level, message))

    lib.set_logger(mo.LOG_TRACE, collect)
    try:
        yield got
    finally:
        lib.set_logger(0, None)


def variants(secret: str):
    """The secret, its base64 forms, and (for long ones) a middle slice."""
    b = secret.encode()
    yield secret
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        e = enc(b).decode()
        yield e
        yield e.rstrip("=")
    # XOAUTH2's SASL string, as it would go to a mail server
    yield base64.b64encode(f"user={ALICE}\x01auth=Bearer {secret}\x01\x01".encode()).decode()
    if len(secret) >= 40:
        mid = len(secret) // 2
        yield secret[mid - 10 : mid + 10]


def test_no_secret_in_logs_errors_or_listings(lib, ctx, idp, logs):
    texts = []  # everything the host could show or store: error JSON, listings

    def expect_error(code, fn, *args):
        with pytest.raises(mo.MailOAuthError) as e:
            fn(*args)
        assert e.value.code == code, e.value
        texts.append(json.dumps(e.value.error))
        texts.append(lib.last_error_message())
        return e.value

    # consent (browser, auto) and silent tokens
    res = auto_consent(ctx, idp, ALICE)
    texts.append(json.dumps(res))
    for p in ("smtp", "imap", "pop3", None):
        assert ctx.token_get(ALICE, p)
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    # a transient failure, retried inside the call
    idp.fail(endpoint="token", count=1, status=503, grant_type="refresh_token")
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    # device flow for bob
    idp.settings(device_interval_s=1)
    with ctx.consent_begin({"account": "bob@contoso.test", "flow": "device", "protocols": ["smtp"]}) as op:
        end = time.monotonic() + 10
        while not op.info().get("user_code") and time.monotonic() < end:
            op.wait(50)
        info = op.info()
        texts.append(json.dumps(info))
        idp.device_approve(info["user_code"], "bob@contoso.test")
        assert op.wait(30000) == mo.OK
        texts.append(json.dumps(op.result()))
    # bad input echoes nothing secret either
    expect_error(mo.INVALID_ARGUMENT, ctx.token_get, ALICE, "imap", 2)
    # an injected invalid_grant: consent required, fail fast afterwards
    idp.fail(endpoint="token", count=1, status=400, error="invalid_grant", aadsts=70000, grant_type="refresh_token")
    expect_error(mo.CONSENT_REQUIRED, ctx.token_get, ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    expect_error(mo.CONSENT_REQUIRED, ctx.token_get, ALICE, "smtp", 0)
    listing = ctx.account_list()
    texts.append(json.dumps(listing))
    assert {a["account"]: a["state"] for a in listing} == {
        ALICE: "consent_required",
        "bob@contoso.test": "ok",
    }
    assert ctx.token_get("bob@contoso.test", "smtp")

    lib.set_logger(0, None)  # no more messages from here on
    messages = [m for _, m in logs]
    levels = {lvl for lvl, _ in logs}
    assert messages, "the logger got nothing"
    assert levels & {mo.LOG_DEBUG, mo.LOG_TRACE}, f"no debug/trace messages at level 5 (levels {levels})"
    assert any("refresh" in m for m in messages), messages[:20]

    secrets = [s for s in idp.secrets() if len(s) >= 8]
    assert len(secrets) >= 10, "the IdP recorded too few secrets for this test to mean anything"
    haystack = "\n".join(messages + texts)
    leaks = []
    for s in secrets:
        for v in variants(s):
            if v in haystack:
                where = next(t for t in messages + texts if v in t)
                leaks.append((s[:6] + "…", v[:6] + "…", where[:200]))
                break
    print(f"\nno-secrets: {len(messages)} log messages, {len(texts)} error/listing texts, {len(secrets)} secrets")
    assert not leaks, leaks[:5]
