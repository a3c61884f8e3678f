"""MailOAuthError carries what the library's last error says: code, name,
message and hint in the configured language, provider_error and
provider_code, server_reply and rejected, retry_after_s; never a secret."""

from __future__ import annotations

import pickle
import threading

import pytest

import mailoauth
from binding_helpers import ALICE, CAROL, closed_port, sign_in
from mailoauth import MailOAuthError


def unreachable_idp(lib, tmp_path, language: str) -> mailoauth.Context:
    return mailoauth.Context({
        "client_id": "00000000-0000-0000-0000-000000000000", "client_secret": "s3cr3t-never-shown",
        "provider": "custom", "authority": f"https://127.0.0.1:{closed_port()}", "tenant": "t",
        "scopes": {"app": "https://outlook.office365.com/.default"}, "language": language,
        "http": {"timeout_ms": 5000, "proxy": "none"},
        "cache": {"protection": "none", "path": str(tmp_path / language)},
    }, library=lib)


@pytest.mark.parametrize("language, message, hint", [
    ("en", "could not reach the identity provider", "Check the network connection, DNS and the proxy"),
    ("de", "war bei", "Netzwerkverbindung, DNS und die Proxy-Einstellung"),
])
def test_message_and_hint_in_the_configured_language(lib, tmp_path, language, message, hint):
    with unreachable_idp(lib, tmp_path, language) as c:
        with pytest.raises(MailOAuthError) as e:
            c.consent({"account": "svc@contoso.test", "flow": "app"}, timeout_ms=60_000)
    err = e.value
    assert err.code == mailoauth.NETWORK and err.name == "NETWORK"
    assert message in err.message and hint in err.hint
    assert err.function == "mailoauth_op_wait"
    assert err.correlation_id  # keys the library adds are attributes too
    assert err.hint in str(err)
    assert "s3cr3t" not in str(err) and "s3cr3t" not in repr(err.error)


def test_the_error_record_is_per_thread(lib, tmp_path):
    with unreachable_idp(lib, tmp_path, "en") as c:
        with pytest.raises(MailOAuthError):
            c.consent({"account": "svc@contoso.test", "flow": "app"}, timeout_ms=60_000)
        seen = {}
        t = threading.Thread(target=lambda: seen.update(lib.last_error()))
        t.start()
        t.join()
        assert seen == {"code": 0, "name": "OK"}
        assert lib.last_error()["code"] == mailoauth.NETWORK


def test_provider_code_of_a_revoked_grant(ctx, idp):
    sign_in(ctx, idp, ALICE)
    assert idp.revoke_refresh_tokens(user=ALICE)["revoked"] >= 1
    with pytest.raises(MailOAuthError) as e:
        ctx.token_get(ALICE, "imap", force_refresh := mailoauth.TOKEN_FORCE_REFRESH)
    assert force_refresh == 1
    err = e.value
    assert err.code == mailoauth.CONSENT_REQUIRED, err
    assert err.provider_code == "AADSTS50173" and err.provider_error == "invalid_grant"
    assert err.hint is None or isinstance(err.hint, str)


def test_server_reply_and_rejected_recipients(ctx, idp):
    sign_in(ctx, idp, CAROL, ("smtp",))
    with pytest.raises(MailOAuthError) as e:
        ctx.smtp_send({"account": CAROL, "message": {"to": ["nobody@1.2.3.4"], "subject": "x", "text": "x"}})
    err = e.value
    assert err.code == mailoauth.SEND_REJECTED
    assert err.rejected == ["nobody@1.2.3.4"]
    assert err.server_reply.startswith("5")


def test_throttled_has_retry_after(ctx, idp):
    sign_in(ctx, idp, ALICE)
    idp.fail(endpoint="token", count=1, status=429, retry_after=30, grant_type="refresh_token")
    with pytest.raises(MailOAuthError) as e:
        ctx.token_get(ALICE, "imap", True)
    assert e.value.code == mailoauth.THROTTLED and 0 < e.value.retry_after_s <= 30


def test_errors_pickle_and_compare_as_codes():
    e = MailOAuthError(200, "CONSENT_REQUIRED", "sign in", {"hint": "h", "provider_code": "AADSTS1"}, "f")
    back = pickle.loads(pickle.dumps(e))
    assert (back.code, back.name, back.message, back.hint, back.provider_code, back.function) == \
        (200, "CONSENT_REQUIRED", "sign in", "h", "AADSTS1", "f")
    assert back.code == mailoauth.CONSENT_REQUIRED == mailoauth.Result.CONSENT_REQUIRED
    assert back.server_reply is None and back.something_newer is None
