"""The account test ("Test settings") through the binding: every step OK
for a signed-in account; without a grant every step says CONSENT_REQUIRED;
a mail server that refuses connections fails its step only; the op can be
polled and its steps read; bad requests are refused."""

from __future__ import annotations

import pytest

import mailoauth
from binding_helpers import ALICE, closed_port, eventually, sign_in
from mailoauth import MailOAuthError


def by_step(steps: list) -> dict:
    return {s["step"]: s for s in steps}


def test_every_step_ok(ctx, idp):
    sign_in(ctx, idp, ALICE)
    steps = ctx.account_test({"account": ALICE}, timeout_ms=120_000)
    assert [s["step"] for s in steps] == ["token", "smtp", "imap", "pop3"]
    for s in steps:
        assert s["code"] == mailoauth.OK and s["name"] == "OK" and s["message"], s
        assert isinstance(s["ms"], int) and s["ms"] >= 0
    token = ctx.token_get(ALICE, "imap")
    assert token not in repr(steps)


def test_without_a_grant_every_step_needs_consent(ctx):
    steps = by_step(ctx.account_test({"account": ALICE, "protocols": ["smtp", "imap"]}, timeout_ms=120_000))
    assert set(steps) >= {"token", "smtp", "imap"}
    assert all(s["code"] == mailoauth.CONSENT_REQUIRED for s in steps.values()), steps


def test_a_failing_server_fails_only_its_step(lib, config, idp):
    port = closed_port()
    cfg = dict(config)
    cfg["servers"] = dict(config["servers"], smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    with mailoauth.Context(cfg, library=lib) as c:
        sign_in(c, idp, ALICE)
        with c.account_test_begin({"account": ALICE}) as op:
            eventually(op.poll, "the account test finished", timeout_s=120)
            steps = by_step(op.result()["steps"])
    assert steps["smtp"]["code"] == mailoauth.NETWORK and steps["smtp"]["message"]
    assert steps["token"]["code"] == steps["imap"]["code"] == steps["pop3"]["code"] == mailoauth.OK


def test_bad_requests(ctx):
    for bad in ('{"account": ', {"account": ALICE, "unknown": 1}):
        with pytest.raises(MailOAuthError) as e:
            ctx.account_test_begin(bad)
        assert e.value.code == mailoauth.INVALID_CONFIG
    with pytest.raises(MailOAuthError) as e:
        ctx.account_test_begin(b'{"account": "\xff"}')
    assert e.value.code == mailoauth.INVALID_ARGUMENT
