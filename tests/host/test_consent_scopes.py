"""Consent flows and the grant they leave, driven like a script host would:
browser flow with the IdP's auto-consent (the authorize URL followed with
`requests`), device flow approved/denied/expired through the admin API, app
flow with the confidential client, account mismatch, sign-out, a revoked
grant, and transient failures of the token endpoint."""

from __future__ import annotations

import re
import time

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, BOB, SERVICE, auto_consent, follow_authorize, make_config, run_child

pytestmark = pytest.mark.usefixtures("need_consent")


def protocols_of(ctx, account):
    [entry] = [a for a in ctx.account_list() if a["account"] == account]
    return entry


def wait_for_user_code(op, seconds=10):
    """Polls op_info (op_wait 50 ms in between) until the device code is there."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        info = op.info()
        if info.get("user_code"):
            return info
        assert op.wait(50) == mo.PENDING, info
    pytest.fail("no user_code in op_info: %r" % op.info())


def manual_decide(url, username, decision="accept"):
    """Plays the user on the IdP's sign-in page (auto-consent off): types
    `username`, presses Accept/Cancel, follows the redirect to our listener."""
    import requests

    s = requests.Session()
    s.trust_env = False
    page = s.get(url, timeout=10)
    assert page.status_code == 200, page.text
    txn = re.search(r'name="txn" value="([^"]+)"', page.text).group(1)
    action = re.search(r'<form id="signin" method="post" action="([^"]+)"', page.text).group(1)
    base = re.match(r"(https?://[^/]+)", url).group(1)
    return s.post(
        base + action.replace("&amp;", "&"),
        data={"txn": txn, "username": username, "decision": decision},
        timeout=30,
        allow_redirects=True,
    )


# ---- scopes: one grant, widened by a later consent ---------------------------


def test_smtp_only_consent_then_imap_consent_keeps_the_grant(lib, ctx, idp):
    res = auto_consent(ctx, idp, ALICE, ["smtp"])
    assert res["account"] == ALICE
    assert "https://outlook.office.com/SMTP.Send" in res["scopes"]

    assert ctx.token_get(ALICE, "smtp")
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "imap")
    assert e.value.code == mo.CONSENT_REQUIRED, e.value
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "smtp imap")
    assert e.value.code == mo.CONSENT_REQUIRED
    assert protocols_of(ctx, ALICE)["protocols"] == ["smtp"]

    auto_consent(ctx, idp, ALICE, ["imap"])
    assert ctx.token_get(ALICE, "imap")
    assert ctx.token_get(ALICE, "smtp")
    assert ctx.token_get(ALICE, "smtp imap")
    entry = protocols_of(ctx, ALICE)
    assert sorted(entry["protocols"]) == ["imap", "smtp"]
    assert entry["state"] == "ok"
    # pop3 was never consented to
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "pop3")
    assert e.value.code == mo.CONSENT_REQUIRED
    # A refresh asks for every consented protocol: one token serves both.
    t = ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert ctx.token_get(ALICE, "smtp") == t
    assert idp.grants("authorization_code") == 2


def test_default_protocols_cover_all_three(lib, ctx, idp):
    idp.settings(auto_consent=True)
    with ctx.consent_begin({"account": ALICE}) as op:
        assert follow_authorize(op.info()["authorize_url"]).status_code == 200
        assert op.wait(30000) == mo.OK
    t = ctx.token_get(ALICE, None)
    for p in ("smtp", "imap", "pop3"):
        assert ctx.token_get(ALICE, p) == t
    assert sorted(protocols_of(ctx, ALICE)["protocols"]) == ["imap", "pop3", "smtp"]


# ---- device flow -------------------------------------------------------------


def test_device_flow_approved(lib, ctx, idp):
    idp.settings(device_interval_s=1)
    with ctx.consent_begin({"account": ALICE, "flow": "device", "protocols": ["imap"]}) as op:
        info = wait_for_user_code(op)
        assert info["state"] == "waiting_for_user"
        assert info["verification_uri"].endswith("/devicelogin")
        assert info["user_code"] in info.get("message", info["user_code"])
        assert isinstance(info["expires_at"], int)
        idp.device_approve(info["user_code"], ALICE)
        assert op.wait(30000) == mo.OK
        res = op.result()
        assert res["account"] == ALICE and res["username"] == ALICE
        assert op.info()["state"] == "done"
    assert ctx.token_get(ALICE, "imap")
    assert idp.grants("device_code") == 1


def test_device_flow_denied(lib, ctx, idp):
    idp.settings(device_interval_s=1)
    with ctx.consent_begin({"account": ALICE, "flow": "device"}) as op:
        info = wait_for_user_code(op)
        idp.device_deny(info["user_code"])
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(30000)
        assert e.value.code == mo.DECLINED, e.value
        assert op.info()["state"] == "failed"
    assert ctx.account_list() == []


def test_device_code_expires(lib, ctx, idp):
    idp.settings(device_interval_s=1, device_code_lifetime_s=2)
    with ctx.consent_begin({"account": ALICE, "flow": "device"}) as op:
        wait_for_user_code(op)
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(30000)
        assert e.value.code == mo.TIMEOUT, e.value
    assert ctx.account_list() == []


# ---- app flow ----------------------------------------------------------------


def test_app_flow_with_the_confidential_client(lib, stack, idp, cache_dir):
    cfg = make_config(
        stack,
        cache_dir,
        # A client secret never travels over plain HTTP: the IdP's TLS listener.
        authority=stack["idp"]["https"],
        allow_plaintext_loopback=False,
        client_id=stack["idp"]["confidential_client_id"],
        client_secret=stack["idp"]["client_secret"],
    )
    with lib.context(cfg) as ctx:
        with ctx.consent_begin({"account": SERVICE, "flow": "app"}) as op:
            assert op.wait(30000) == mo.OK
            res = op.result()
            assert res["account"] == SERVICE
            assert res["scopes"]
        t = ctx.token_get(SERVICE, "imap")
        assert t and ctx.token_get(SERVICE, "smtp") == t
        assert ctx.token_get(SERVICE, "imap", mo.TOKEN_FORCE_REFRESH)
        [entry] = ctx.account_list()
        assert entry["account"] == SERVICE and entry["state"] == "ok"
    assert idp.grants("client_credentials") >= 2


# ---- account mismatch ----------------------------------------------------------


def test_device_flow_signed_in_as_someone_else(lib, ctx, idp):
    """Consent asked for bob; the approval comes from auto_consent_user (alice)."""
    idp.settings(device_interval_s=1, auto_consent_user=ALICE)
    with ctx.consent_begin({"account": BOB, "flow": "device"}) as op:
        info = wait_for_user_code(op)
        idp.device_approve(info["user_code"])  # as the auto-consent user, alice
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(30000)
        assert e.value.code == mo.ACCOUNT_MISMATCH, e.value
    assert ctx.account_list() == []
    for who in (BOB, ALICE):
        with pytest.raises(mo.MailOAuthError) as e:
            ctx.token_get(who, "imap")
        assert e.value.code == mo.CONSENT_REQUIRED


def test_browser_flow_signed_in_as_someone_else(lib, ctx, idp):
    """The user types alice on the sign-in page although bob was asked for."""
    with ctx.consent_begin({"account": BOB, "flow": "browser"}) as op:
        manual_decide(op.info()["authorize_url"], ALICE)
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(30000)
        assert e.value.code == mo.ACCOUNT_MISMATCH, e.value
    assert ctx.account_list() == []


def test_accept_other_account_stores_under_the_signed_in_name(lib, ctx, idp):
    with ctx.consent_begin({"account": BOB, "flow": "browser", "accept_other_account": True}) as op:
        manual_decide(op.info()["authorize_url"], ALICE)
        assert op.wait(30000) == mo.OK
        res = op.result()
    assert res["username"] == ALICE
    names = [a["account"] for a in ctx.account_list()]
    assert len(names) == 1
    assert ctx.token_get(names[0], "imap")


# ---- sign-out ------------------------------------------------------------------


def test_account_remove_then_consent_required(lib, ctx, idp, config_file):
    auto_consent(ctx, idp, ALICE)
    assert ctx.token_get(ALICE, "imap")
    ctx.account_remove(ALICE)
    assert ctx.account_list() == []
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "imap")
    assert e.value.code == mo.CONSENT_REQUIRED
    # also for another process reading the same cache
    out = run_child("tokens", config_file, ALICE, "imap")
    assert out["results"]["imap"]["code"] == mo.CONSENT_REQUIRED
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.account_remove(ALICE)
    assert e.value.code == mo.NOT_FOUND


# ---- a grant the provider no longer honours --------------------------------------


def test_revoked_grant_needs_consent_and_fails_fast(lib, ctx, idp):
    auto_consent(ctx, idp, ALICE)
    assert ctx.token_get(ALICE, "imap")
    assert idp.revoke_refresh_tokens(user=ALICE)["revoked"] >= 1
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert e.value.code == mo.CONSENT_REQUIRED, e.value
    assert e.value.provider_code == "AADSTS50173", e.value.error
    assert e.value.provider_error == "invalid_grant"

    entry = protocols_of(ctx, ALICE)
    assert entry["state"] == "consent_required"
    assert entry["last_error"]["code"] == mo.CONSENT_REQUIRED
    assert entry["last_error"].get("provider_code") == "AADSTS50173"

    # Fail fast: the token endpoint is not asked again within the minute.
    before = idp.counters()["token"]
    for flags in (0, mo.TOKEN_FORCE_REFRESH):
        with pytest.raises(mo.MailOAuthError) as e:
            ctx.token_get(ALICE, "smtp", flags)
        assert e.value.code == mo.CONSENT_REQUIRED
        assert e.value.provider_code == "AADSTS50173"
    assert idp.counters()["token"] == before

    # A new consent heals it.
    auto_consent(ctx, idp, ALICE)
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert protocols_of(ctx, ALICE)["state"] == "ok"


# ---- transient failures ------------------------------------------------------------


def test_two_503_then_success_keeps_the_grant(lib, ctx, idp):
    auto_consent(ctx, idp, ALICE)
    before = idp.counters()["token"]
    idp.fail(endpoint="token", count=2, status=503, grant_type="refresh_token")
    t = ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert t
    after = idp.counters()["token"]
    assert after["errors"] - before["errors"] == 2  # both faults were met
    assert after["refresh_token"] - before["refresh_token"] == 1  # and retried
    # the grant survived: another forced refresh works, the state is ok
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH) != t
    assert protocols_of(ctx, ALICE)["state"] == "ok"


def test_429_with_long_retry_after_is_throttled(lib, ctx, idp, config_file):
    """429 + Retry-After 30 (longer than the library waits inside a call):
    THROTTLED with retry_after_s. The refresh token is kept; until the
    retry-after has passed the library does not ask the provider again (the
    ABI: THROTTLED = "asked to back off"), also after the provider recovered."""
    auto_consent(ctx, idp, ALICE)
    assert ctx.token_get(ALICE, "imap")
    idp.fail(endpoint="token", count=1, status=429, retry_after=30, grant_type="refresh_token")
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert e.value.code == mo.THROTTLED, e.value
    assert 0 < e.value.retry_after_s <= 30, e.value.error
    entry = protocols_of(ctx, ALICE)
    assert entry["state"] == "throttled"
    assert entry["last_error"]["code"] == mo.THROTTLED

    idp.reset()  # the provider recovered (and forgot every token: only the cache matters now)
    before = idp.counters()["token"]
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert e.value.code == mo.THROTTLED
    assert 0 < e.value.retry_after_s <= 30
    # another process sees the same back-off (it is in the store, not in
    # memory), and still gets the valid cached access token without a refresh
    out = run_child("tokens", config_file, ALICE, "imap")["results"]["imap"]
    assert out["ok"], out
    out = run_child("tokens", config_file, ALICE, "--flags=1", "imap")["results"]["imap"]
    assert out["code"] == mo.THROTTLED and 0 < out["error"]["retry_after_s"] <= 30, out
    assert idp.counters()["token"] == before, "the provider was asked before the retry-after passed"


def test_throttled_still_hands_out_the_valid_cached_token(lib, ctx, idp):
    """ABI: token_get "returns a cached access token that stays valid for at
    least min(5 minutes, half its lifetime) more, or refreshes, or fails".
    A failed forced refresh (429) does not make the cached token invalid."""
    auto_consent(ctx, idp, ALICE)
    cached = ctx.token_get(ALICE, "imap")
    idp.fail(endpoint="token", count=1, status=429, retry_after=30, grant_type="refresh_token")
    with pytest.raises(mo.MailOAuthError):
        ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert ctx.token_get(ALICE, "imap") == cached


# ---- handle lifetimes ------------------------------------------------------------


def test_op_outlives_its_context(lib, config, idp):
    """ABI: child handles keep their context alive, handles may be freed in
    any order. Whatever freeing the context first means for a running consent
    (it keeps working, or it is cancelled), the user must not be told the
    sign-in worked while the grant is thrown away."""
    import requests

    idp.settings(auto_consent=True)
    c = lib.context(config)
    op = c.consent_begin({"account": ALICE, "flow": "browser", "protocols": ["imap"]})
    url = op.info()["authorize_url"]
    c.free()
    try:
        try:
            page = follow_authorize(url).text
        except requests.ConnectionError:
            page = ""  # the listener closed: the consent was cancelled
        try:
            rc = op.wait(30000)
        except mo.MailOAuthError as e:
            rc = e.code
        assert rc in (mo.OK, mo.CANCELLED), lib.result_str(rc)
        if "Sign-in complete" in page:
            assert rc == mo.OK, "the browser said the sign-in worked, the op failed"
        if rc == mo.OK:
            assert op.result()["account"] == ALICE
    finally:
        op.free()
    if rc == mo.OK:
        with lib.context(config) as c2:
            assert c2.token_get(ALICE, "imap")
    else:
        assert idp.grants("authorization_code") == 0, "the code was redeemed for nothing"


def test_op_free_cancels_and_closes_the_listener(lib, ctx, idp):
    import socket
    from urllib.parse import parse_qs, urlparse

    op = ctx.consent_begin({"account": ALICE, "flow": "browser"})
    redirect = parse_qs(urlparse(op.info()["authorize_url"]).query)["redirect_uri"][0]
    port = urlparse(redirect).port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the listener is up
    op.free()
    end = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break  # closed
        assert time.monotonic() < end, "the loopback listener stayed open after op_free"
        time.sleep(0.02)
    assert ctx.account_list() == []
