"""Tests of mailoauth-test-idp, the local imitation of Microsoft's identity platform.

Run:  cargo build -p mailoauth-test-idp && python3 -m pytest -q tests/stack/test_idp.py
The binary comes from $MAILOAUTH_IDP_BIN (default: target/debug/mailoauth-test-idp).
The fixture starts it on OS-chosen ports (plain HTTP), and resets it before every test.
"""

import base64
import hashlib
import json
import os
import re
import secrets as pysecrets
import signal
import subprocess
import time
import urllib.parse

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MAILOAUTH_IDP_BIN", os.path.join(ROOT, "target", "debug", "mailoauth-test-idp"))

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PUBLIC = "00000000-0000-0000-0000-0000000000a1"
CONF = "00000000-0000-0000-0000-0000000000a2"
SECRET = "idp-test-secret-a2-0123456789"
IMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
POP = "https://outlook.office.com/POP.AccessAsUser.All"
SMTP = "https://outlook.office.com/SMTP.Send"
MAIL_SCOPES = f"{IMAP} {POP} {SMTP} offline_access openid profile"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# ----------------------------------------------------------------------------------------------
# fixtures and helpers


class Idp:
    def __init__(self, base, log_path):
        self.base = base
        self.log_path = log_path
        self.s = requests.Session()

    def url(self, path):
        return self.base + path

    def admin(self, path, body=None, method=None):
        method = method or ("POST" if body is not None else "GET")
        r = self.s.request(method, self.url("/admin/" + path), json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def settings(self, **kw):
        return self.admin("settings", kw)

    def token(self, tenant="common", headers=None, auth=None, **form):
        return self.s.post(self.url(f"/{tenant}/oauth2/v2.0/token"), data=form, headers=headers, auth=auth)

    def authorize(self, tenant="common", **params):
        return self.s.get(self.url(f"/{tenant}/oauth2/v2.0/authorize"), params=params, allow_redirects=False)

    def introspect(self, token, service=None):
        headers = {"X-Dovecot-Auth-Service": service} if service else {}
        r = self.s.post(self.url("/introspect"), data={"token": token}, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.path.exists(BIN):
        pytest.fail(f"IdP binary not found at {BIN}; run `cargo build -p mailoauth-test-idp`")
    d = tmp_path_factory.mktemp("idp")
    ports = d / "ports.json"
    log = d / "idp.log"
    proc = subprocess.Popen(
        [BIN, "--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0",
         "--ports-file", str(ports), "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "wb"),
    )
    deadline = time.time() + 20
    while not ports.exists():
        assert proc.poll() is None, "IdP exited during start-up"
        assert time.time() < deadline, "IdP did not write its ports file"
        time.sleep(0.05)
    p = json.loads(ports.read_text())
    idp = Idp(f"http://127.0.0.1:{p['http']}", str(log))
    assert idp.s.get(idp.url("/health")).status_code == 200
    yield idp
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, "IdP did not exit cleanly on SIGTERM"


@pytest.fixture
def idp(server):
    server.admin("reset", {})
    return server


def pkce_pair():
    verifier = base64.urlsafe_b64encode(pysecrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def auth_params(redirect="http://localhost:53123", scope=MAIL_SCOPES, challenge=None, **extra):
    p = {"client_id": PUBLIC, "response_type": "code", "redirect_uri": redirect, "scope": scope,
         "state": "st-" + pysecrets.token_hex(4), "response_mode": "query"}
    if challenge:
        p.update(code_challenge=challenge, code_challenge_method="S256")
    p.update(extra)
    return p


def get_code(idp, user="alice@contoso.test", scope=MAIL_SCOPES, redirect="http://localhost:53123", **extra):
    """Auth code through auto-consent. Returns (code, verifier, redirect)."""
    idp.settings(auto_consent=True)
    verifier, challenge = pkce_pair()
    r = idp.authorize(**auth_params(redirect=redirect, scope=scope, challenge=challenge, login_hint=user, **extra))
    assert r.status_code == 302, r.text
    q = query_of(r.headers["Location"])
    assert "code" in q, q
    return q["code"], verifier, redirect


def redeem(idp, code, verifier, redirect="http://localhost:53123", scope=MAIL_SCOPES, **extra):
    return idp.token(grant_type="authorization_code", client_id=PUBLIC, code=code, redirect_uri=redirect,
                     code_verifier=verifier, scope=scope, **extra)


def sign_in(idp, user="alice@contoso.test", scope=MAIL_SCOPES):
    code, verifier, redirect = get_code(idp, user=user, scope=scope)
    r = redeem(idp, code, verifier, redirect, scope=scope)
    assert r.status_code == 200, r.text
    return r.json()


def refresh(idp, rt, scope=MAIL_SCOPES, **extra):
    form = dict(grant_type="refresh_token", client_id=PUBLIC, refresh_token=rt, **extra)
    if scope is not None:
        form["scope"] = scope
    return idp.token(**form)


def jwt_payload(tok):
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def assert_ms_error(r, status, error, code, correlation=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    e = r.json()
    assert e["error"] == error, e
    assert e["error_codes"] == [code], e
    m = re.fullmatch(
        rf"AADSTS{code}: (.+)\r\nTrace ID: ({GUID})\r\nCorrelation ID: (\S+)\r\nTimestamp: "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ)", e["error_description"], re.S)
    assert m, repr(e["error_description"])
    assert m.group(2) == e["trace_id"]
    assert m.group(3) == e["correlation_id"]
    assert m.group(4) == e["timestamp"]
    assert e["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    if correlation:
        assert e["correlation_id"] == correlation
    else:
        assert re.fullmatch(GUID, e["correlation_id"])
    return e


def form_fields(html):
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    action = re.search(r'<form id="\w+" method="post" action="([^"]+)"', html).group(1)
    return action, fields


# ----------------------------------------------------------------------------------------------
# authorization code + PKCE


def test_auth_code_pkce_auto_consent(idp):
    code, verifier, redirect = get_code(idp, user="alice@contoso.test", client_info="1")
    r = redeem(idp, code, verifier, redirect, client_info="1")
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["token_type"] == "Bearer"
    assert t["expires_in"] == 3600 and t["ext_expires_in"] == 3600
    assert set(t["scope"].split()) == {IMAP, POP, SMTP}
    at = t["access_token"]
    assert len(at) == 1600 and re.fullmatch(r"[A-Za-z0-9_-]+", at)
    assert t["refresh_token"]
    claims = jwt_payload(t["id_token"])
    assert claims["aud"] == PUBLIC
    assert claims["iss"] == f"https://login.microsoftonline.com/{TID}/v2.0"
    assert claims["preferred_username"] == "alice@contoso.test"
    assert claims["tid"] == TID and claims["ver"] == "2.0"
    assert re.fullmatch(GUID, claims["oid"])
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert {"name", "sub"} <= claims.keys()
    ci = json.loads(base64.urlsafe_b64decode(t["client_info"] + "=="))
    assert ci == {"uid": claims["oid"], "utid": TID}
    # the authorize request was recorded with its parameters
    reqs = idp.admin("requests?endpoint=authorize")
    assert reqs[-1]["params"]["code_challenge_method"] == "S256"
    assert reqs[-1]["params"]["login_hint"] == "alice@contoso.test"
    # secrets in the token request log are redacted
    treq = idp.admin("requests?endpoint=token")[-1]["params"]
    assert treq["grant_type"] == "authorization_code"
    assert code not in json.dumps(treq) and verifier not in json.dumps(treq)


def test_auth_code_through_html_form(idp):
    verifier, challenge = pkce_pair()
    params = auth_params(challenge=challenge, login_hint="bob@contoso.test", prompt="consent")
    r = idp.authorize(**params)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    html = r.text
    assert 'id="accept"' in html and 'id="cancel"' in html
    assert 'id="username" name="username" value="bob@contoso.test"' in html
    for s in (IMAP, POP, SMTP, "offline_access"):
        assert f'data-scope="{s}"' in html
    action, fields = form_fields(html)
    assert action == "/common/oauth2/v2.0/authorize/decide"
    # the browser posts the form, pressing Accept
    r = idp.s.post(idp.url(action), data={**fields, "username": "bob@contoso.test", "decision": "accept"},
                   allow_redirects=False)
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith("http://localhost:53123?")
    q = query_of(loc)
    assert q["state"] == params["state"]
    t = redeem(idp, q["code"], verifier)
    assert t.status_code == 200, t.text
    assert jwt_payload(t.json()["id_token"])["preferred_username"] == "bob@contoso.test"
    # the transaction is single-use
    r = idp.s.post(idp.url(action), data={**fields, "decision": "accept", "username": "bob@contoso.test"},
                   allow_redirects=False)
    assert r.status_code == 400


def test_select_account_lists_users(idp):
    r = idp.authorize(**auth_params(prompt="select_account", login_hint="carol@contoso.test"))
    assert r.status_code == 200
    for u in ("alice", "bob", "carol", "service", "shared"):
        assert f'value="{u}@contoso.test"' in r.text
    assert 'value="carol@contoso.test" checked' in r.text
    action, fields = form_fields(r.text)
    r = idp.s.post(idp.url(action), data={**fields, "account": "carol@contoso.test", "username": "",
                                          "decision": "accept"}, allow_redirects=False)
    assert r.status_code == 302 and "code" in query_of(r.headers["Location"])


def test_unknown_user_at_sign_in(idp):
    r = idp.authorize(**auth_params())
    action, fields = form_fields(r.text)
    r = idp.s.post(idp.url(action), data={**fields, "username": "mallory@contoso.test", "decision": "accept"},
                   allow_redirects=False)
    assert r.status_code == 400 and "AADSTS50034" in r.text and 'id="accept"' in r.text
    # auto-consent with an unknown login_hint shows the error page, no redirect
    idp.settings(auto_consent=True)
    r = idp.authorize(**auth_params(login_hint="mallory@contoso.test"))
    assert r.status_code == 400 and "AADSTS50034" in r.text and "Location" not in r.headers


def test_cancel_gives_access_denied(idp):
    params = auth_params()
    r = idp.authorize(**params)
    action, fields = form_fields(r.text)
    r = idp.s.post(idp.url(action), data={**fields, "decision": "cancel"}, allow_redirects=False)
    assert r.status_code == 302
    q = query_of(r.headers["Location"])
    assert q["error"] == "access_denied"
    assert q["error_description"].startswith("AADSTS65004: User declined to consent")
    assert q["state"] == params["state"]
    assert "code" not in q


def test_code_reuse(idp):
    code, verifier, redirect = get_code(idp)
    assert redeem(idp, code, verifier, redirect).status_code == 200
    assert_ms_error(redeem(idp, code, verifier, redirect), 400, "invalid_grant", 54005)


def test_pkce_mismatch_and_missing_verifier(idp):
    code, verifier, redirect = get_code(idp)
    other, _ = pkce_pair()
    assert_ms_error(redeem(idp, code, other, redirect), 400, "invalid_grant", 501481)
    r = idp.token(grant_type="authorization_code", client_id=PUBLIC, code=code, redirect_uri=redirect)
    assert_ms_error(r, 400, "invalid_request", 900144)
    # a failed PKCE check does not burn the code
    assert redeem(idp, code, verifier, redirect).status_code == 200


def test_pkce_plain_and_no_challenge(idp):
    idp.settings(auto_consent=True)
    verifier, _ = pkce_pair()
    r = idp.authorize(**auth_params(code_challenge=verifier, code_challenge_method="plain"))
    code = query_of(r.headers["Location"])["code"]
    assert redeem(idp, code, verifier).status_code == 200
    r = idp.authorize(**auth_params())  # no challenge at all: allowed, like Microsoft
    code = query_of(r.headers["Location"])["code"]
    r = idp.token(grant_type="authorization_code", client_id=PUBLIC, code=code,
                  redirect_uri="http://localhost:53123")
    assert r.status_code == 200, r.text


def test_redirect_uri_rules(idp):
    idp.settings(auto_consent=True)
    for ok in ("http://localhost", "http://localhost:1234", "http://127.0.0.1:9/", "http://localhost:8080/"):
        r = idp.authorize(**auth_params(redirect=ok))
        assert r.status_code == 302 and r.headers["Location"].startswith(ok), ok
    for bad in ("http://localhost:1234/callback", "https://localhost:1234", "http://evil.test:1234",
                "http://[::1]:1234"):
        r = idp.authorize(**auth_params(redirect=bad))
        assert r.status_code == 400 and "Location" not in r.headers, bad
        assert "AADSTS50011" in r.text
    # at the token endpoint the redirect_uri must be byte-identical to the authorize one
    code, verifier, _ = get_code(idp, redirect="http://localhost:53123")
    assert_ms_error(redeem(idp, code, verifier, redirect="http://localhost:53123/"), 400, "invalid_grant", 500112)
    assert redeem(idp, code, verifier, redirect="http://localhost:53123").status_code == 200


def test_authorize_errors(idp):
    r = idp.authorize(**{**auth_params(), "client_id": "11111111-2222-3333-4444-555555555555"})
    assert r.status_code == 400 and "AADSTS700016" in r.text and "Location" not in r.headers
    r = idp.authorize(tenant="fabrikam.test", **auth_params())
    assert r.status_code == 400 and "AADSTS90002" in r.text
    r = idp.authorize(**auth_params(response_mode="fragment"))
    assert r.status_code == 302 and query_of(r.headers["Location"])["error"] == "invalid_request"
    r = idp.authorize(**{**auth_params(), "response_type": "token"})
    assert query_of(r.headers["Location"])["error"] == "unsupported_response_type"


def test_prompt_none(idp):
    r = idp.authorize(**auth_params(prompt="none", login_hint="alice@contoso.test"))
    q = query_of(r.headers["Location"])
    assert q["error"] == "interaction_required" and "code" not in q
    r = idp.authorize(**auth_params(prompt="none"))
    assert query_of(r.headers["Location"])["error"] == "login_required"
    sign_in(idp, user="alice@contoso.test")  # records consent
    idp.settings(auto_consent=False)
    r = idp.authorize(**auth_params(prompt="none", login_hint="alice@contoso.test"))
    assert "code" in query_of(r.headers["Location"])


def test_code_expiry(idp):
    idp.settings(code_lifetime_s=1)
    code, verifier, redirect = get_code(idp)
    time.sleep(1.1)
    assert_ms_error(redeem(idp, code, verifier, redirect), 400, "invalid_grant", 70008)


def test_tenant_segments(idp):
    for tenant in ("common", "organizations", TID, "contoso.test", "CONTOSO.TEST"):
        code, verifier, redirect = get_code(idp)
        r = idp.token(tenant=tenant, grant_type="authorization_code", client_id=PUBLIC, code=code,
                      redirect_uri=redirect, code_verifier=verifier)
        assert r.status_code == 200, (tenant, r.text)
    for tenant in ("consumers", "fabrikam.test", "00000000-0000-0000-0000-000000000000"):
        assert_ms_error(idp.token(tenant=tenant, grant_type="refresh_token", client_id=PUBLIC, refresh_token="x"),
                        400, "invalid_request", 90002)


# ----------------------------------------------------------------------------------------------
# refresh tokens


def test_refresh_microsoft_rotation(idp):
    t = sign_in(idp)
    rt0 = t["refresh_token"]
    r1 = refresh(idp, rt0)
    assert r1.status_code == 200, r1.text
    rt1 = r1.json()["refresh_token"]
    assert rt1 != rt0
    assert "id_token" in r1.json()
    # the old RT stays valid until its own expiry
    r2 = refresh(idp, rt0)
    assert r2.status_code == 200 and r2.json()["refresh_token"] not in (rt0, rt1)
    assert refresh(idp, rt1).status_code == 200


def test_refresh_strict_rotation(idp):
    idp.settings(rotation="strict")
    t = sign_in(idp)
    rt0 = t["refresh_token"]
    r1 = refresh(idp, rt0)
    assert r1.status_code == 200
    e = assert_ms_error(refresh(idp, rt0), 400, "invalid_grant", 70000)
    assert "already been redeemed" in e["error_description"]
    assert refresh(idp, r1.json()["refresh_token"]).status_code == 200


def test_refresh_scope_subset_normalised(idp):
    t = sign_in(idp)
    # other prefix, other case, subset: all fine
    r = refresh(idp, t["refresh_token"], scope="https://outlook.office365.com/smtp.send offline_access openid profile")
    assert r.status_code == 200, r.text
    # the token carries every consented scope of the resource, as Entra does
    assert set(r.json()["scope"].split()) == {IMAP, POP, SMTP}
    # no scope parameter: the grant's own scopes
    r = refresh(idp, t["refresh_token"], scope=None)
    assert r.status_code == 200


def test_refresh_without_consent_keeps_rt(idp):
    idp.settings(rotation="strict")
    t = sign_in(idp, scope=f"{SMTP} offline_access openid profile")
    rt = t["refresh_token"]
    e = assert_ms_error(refresh(idp, rt, scope=f"{IMAP} offline_access"), 400, "invalid_grant", 65001)
    assert e["suberror"] == "consent_required"
    # the refused request did not consume the RT, even with strict rotation
    r = refresh(idp, rt, scope=f"{SMTP} offline_access")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == SMTP


def test_refresh_two_resources(idp):
    t = sign_in(idp)
    assert_ms_error(refresh(idp, t["refresh_token"], scope=f"{IMAP} https://graph.microsoft.com/User.Read"),
                    400, "invalid_scope", 70011)
    assert_ms_error(refresh(idp, t["refresh_token"],
                            scope="https://outlook.office.com/.default https://graph.microsoft.com/.default"),
                    400, "invalid_scope", 700022)


def test_refresh_revoked_and_expired(idp):
    t = sign_in(idp)
    tb = sign_in(idp, user="bob@contoso.test")
    assert idp.admin("revoke_refresh_tokens", {"user": "alice@contoso.test"})["revoked"] >= 1
    assert_ms_error(refresh(idp, t["refresh_token"]), 400, "invalid_grant", 50173)
    assert refresh(idp, tb["refresh_token"]).status_code == 200
    idp.admin("revoke_refresh_tokens", {"aadsts": 700082})
    assert_ms_error(refresh(idp, tb["refresh_token"]), 400, "invalid_grant", 700082)
    idp.settings(refresh_token_lifetime_s=1)
    t = sign_in(idp)
    time.sleep(1.1)
    assert_ms_error(refresh(idp, t["refresh_token"]), 400, "invalid_grant", 700082)
    assert_ms_error(refresh(idp, "garbage-refresh-token"), 400, "invalid_grant", 9002313)


# ----------------------------------------------------------------------------------------------
# device code


def start_device(idp, scope=MAIL_SCOPES, client_id=PUBLIC):
    r = idp.s.post(idp.url("/organizations/oauth2/v2.0/devicecode"), data={"client_id": client_id, "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()


def poll(idp, dc):
    return idp.token(grant_type=DEVICE_GRANT, client_id=PUBLIC, device_code=dc["device_code"])


def test_device_flow_admin_approve(idp):
    idp.settings(device_interval_s=1)
    dc = start_device(idp)
    assert re.fullmatch(r"[A-Z0-9]{9}", dc["user_code"])
    assert dc["verification_uri"] == idp.base + "/devicelogin"
    assert dc["expires_in"] == 900 and dc["interval"] == 1
    assert dc["message"] == (f"To sign in, use a web browser to open the page {dc['verification_uri']} "
                             f"and enter the code {dc['user_code']} to authenticate.")
    assert_ms_error(poll(idp, dc), 400, "authorization_pending", 70016)
    assert dc["user_code"] in idp.admin("device/pending")["user_codes"]
    idp.admin("device/approve", {"user_code": dc["user_code"], "user": "carol@contoso.test"})
    time.sleep(1.0)
    r = poll(idp, dc)
    assert r.status_code == 200, r.text
    t = r.json()
    assert jwt_payload(t["id_token"])["preferred_username"] == "carol@contoso.test"
    assert t["refresh_token"] and set(t["scope"].split()) == {IMAP, POP, SMTP}
    assert dc["user_code"] not in idp.admin("device/pending")["user_codes"]
    time.sleep(1.0)
    assert_ms_error(poll(idp, dc), 400, "invalid_grant", 54005)


def test_device_flow_browser(idp):
    idp.settings(device_interval_s=1)
    dc = start_device(idp)
    r = idp.s.get(idp.url("/devicelogin"))
    assert r.status_code == 200 and 'id="otc"' in r.text
    r = idp.s.post(idp.url("/devicelogin"), data={"otc": "NOTACODE1"})
    assert r.status_code == 400 and "AADSTS70018" in r.text
    r = idp.s.post(idp.url("/devicelogin"), data={"otc": dc["user_code"].lower()})
    assert r.status_code == 200 and 'id="accept"' in r.text
    action, fields = form_fields(r.text)
    r = idp.s.post(idp.url(action), data={**fields, "username": "bob@contoso.test", "decision": "accept"})
    assert r.status_code == 200 and "signed in" in r.text
    r = poll(idp, dc)
    assert r.status_code == 200, r.text
    assert jwt_payload(r.json()["id_token"])["preferred_username"] == "bob@contoso.test"


def test_device_flow_deny(idp):
    idp.settings(device_interval_s=1)
    dc = start_device(idp)
    idp.admin("device/deny", {"user_code": dc["user_code"]})
    assert_ms_error(poll(idp, dc), 400, "authorization_declined", 70000)
    # browser cancel
    dc = start_device(idp)
    r = idp.s.post(idp.url("/devicelogin"), data={"otc": dc["user_code"]})
    action, fields = form_fields(r.text)
    r = idp.s.post(idp.url(action), data={**fields, "decision": "cancel"})
    assert r.status_code == 200 and "declined" in r.text
    assert_ms_error(poll(idp, dc), 400, "authorization_declined", 70000)


def test_device_flow_expiry_and_bad_code(idp):
    idp.settings(device_code_lifetime_s=1, device_interval_s=1)
    dc = start_device(idp)
    time.sleep(1.1)
    assert_ms_error(poll(idp, dc), 400, "expired_token", 70019)
    r = idp.token(grant_type=DEVICE_GRANT, client_id=PUBLIC, device_code="DAQAB-unknown-device-code")
    assert_ms_error(r, 400, "bad_verification_code", 70018)


def test_device_flow_slow_down(idp):
    idp.settings(device_interval_s=2)
    dc = start_device(idp)
    assert_ms_error(poll(idp, dc), 400, "authorization_pending", 70016)
    assert_ms_error(poll(idp, dc), 400, "slow_down", 70016)
    idp.settings(device_slow_down=False)
    assert_ms_error(poll(idp, dc), 400, "authorization_pending", 70016)


# ----------------------------------------------------------------------------------------------
# client credentials and client authentication


def test_client_credentials(idp):
    r = idp.token(tenant=TID, grant_type="client_credentials", client_id=CONF, client_secret=SECRET,
                  scope="https://outlook.office365.com/.default")
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["token_type"] == "Bearer" and t["expires_in"] == 3600
    assert "refresh_token" not in t and "id_token" not in t
    for svc in ("imap", "pop3", "smtp"):
        i = idp.introspect(t["access_token"], svc)
        assert i["active"] is True and i["username"] == "service@contoso.test", i
    # HTTP Basic works too, on the domain tenant, with the other prefix
    r = idp.token(tenant="contoso.test", auth=(CONF, SECRET), grant_type="client_credentials",
                  scope="https://outlook.office.com/.default")
    assert r.status_code == 200, r.text
    # a Graph app token is issued but is no good for mail
    r = idp.token(tenant=TID, grant_type="client_credentials", client_id=CONF, client_secret=SECRET,
                  scope="https://graph.microsoft.com/.default")
    assert r.status_code == 200 and idp.introspect(r.json()["access_token"], "imap") == {"active": False}


def test_client_credentials_errors(idp):
    cc = dict(grant_type="client_credentials", client_id=CONF, scope="https://outlook.office365.com/.default")
    assert_ms_error(idp.token(tenant=TID, client_secret="wrong-secret-value", **cc), 401, "invalid_client", 7000215)
    assert_ms_error(idp.token(tenant=TID, **cc), 401, "invalid_client", 7000218)
    assert_ms_error(idp.token(tenant="common", client_secret=SECRET, **cc), 400, "invalid_request", 9001023)
    assert_ms_error(idp.token(tenant="organizations", client_secret=SECRET, **cc), 400, "invalid_request", 9001023)
    assert_ms_error(idp.token(tenant=TID, client_secret=SECRET, **{**cc, "scope": SMTP}), 400, "invalid_scope",
                    1002012)
    assert_ms_error(idp.token(tenant=TID, client_secret=SECRET, **{**cc, "client_id": PUBLIC}), 401,
                    "invalid_client", 700025)
    assert_ms_error(idp.token(tenant=TID, **{**cc, "client_id": PUBLIC}), 401, "invalid_client", 7000218)


def test_client_authentication_on_user_grants(idp):
    code, verifier, redirect = get_code(idp)
    # public client with a secret
    assert_ms_error(redeem(idp, code, verifier, redirect, client_secret="some-secret-value"), 401,
                    "invalid_client", 700025)
    # unknown client
    r = idp.token(grant_type="refresh_token", client_id="11111111-2222-3333-4444-555555555555", refresh_token="x")
    assert_ms_error(r, 400, "unauthorized_client", 700016)
    # the code was issued to the public client: another client cannot redeem it
    r = idp.token(grant_type="authorization_code", client_id=CONF, client_secret=SECRET, code=code,
                  redirect_uri=redirect, code_verifier=verifier)
    assert_ms_error(r, 400, "invalid_grant", 70000)


def test_malformed_requests(idp):
    r = idp.s.get(idp.url("/common/oauth2/v2.0/token"))
    assert_ms_error(r, 405, "invalid_request", 900561)
    assert_ms_error(idp.token(client_id=PUBLIC), 400, "invalid_request", 900144)
    assert_ms_error(idp.token(grant_type="password", client_id=PUBLIC), 400, "unsupported_grant_type", 70003)
    r = idp.s.post(idp.url("/common/oauth2/v2.0/token"), data=b"\xff\xfe%%%&&==",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_ms_error(r, 400, "invalid_request", 900144)
    r = idp.s.post(idp.url("/common/oauth2/v2.0/token"), json={"grant_type": "refresh_token"})
    assert_ms_error(r, 400, "invalid_request", 900144)
    r = idp.s.post(idp.url("/common/oauth2/v2.0/token"), data={"grant_type": "authorization_code", "client_id": PUBLIC})
    assert_ms_error(r, 400, "invalid_request", 900144)
    r = idp.s.post(idp.url("/admin/settings"), data=b"{not json")
    assert r.status_code == 400
    r = idp.s.get(idp.url("/nope"))
    assert r.status_code == 404
    assert idp.s.get(idp.url("/health")).status_code == 200


def test_error_shape_and_correlation_id(idp):
    cid = "3f2a1b4c-0000-4000-8000-123456789abc"
    r = idp.token(headers={"client-request-id": cid}, grant_type="refresh_token", client_id=PUBLIC,
                  refresh_token="not-a-real-token")
    e = assert_ms_error(r, 400, "invalid_grant", 9002313, correlation=cid)
    assert set(e) >= {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
                      "error_uri"}
    r2 = refresh(idp, "not-a-real-token")
    e2 = assert_ms_error(r2, 400, "invalid_grant", 9002313)
    assert e2["trace_id"] != e["trace_id"]


# ----------------------------------------------------------------------------------------------
# introspection


def test_introspection_per_service(idp):
    t = sign_in(idp)
    at = t["access_token"]
    for svc in ("imap", "pop3", "smtp"):
        i = idp.introspect(at, svc)
        assert i["active"] is True and i["username"] == "alice@contoso.test"
        assert i["token_type"] == "Bearer" and 3590 <= i["expires_in"] <= 3600
        assert i["client_id"] == PUBLIC and SMTP in i["scope"].split()
    assert idp.introspect(at)["active"] is True  # no service header: no service check
    assert idp.introspect(at, "sieve") == {"active": False}
    assert idp.introspect("no-such-token") == {"active": False}
    # a token whose consent covers only SMTP.Send
    t2 = sign_in(idp, user="bob@contoso.test", scope=f"{SMTP} offline_access openid profile")
    assert idp.introspect(t2["access_token"], "imap") == {"active": False}
    assert idp.introspect(t2["access_token"], "pop3") == {"active": False}
    assert idp.introspect(t2["access_token"], "smtp")["username"] == "bob@contoso.test"
    # the Graph-prefix pitfall: a bare IMAP scope is a Graph token and is refused by the mail servers
    t3 = sign_in(idp, user="carol@contoso.test", scope="IMAP.AccessAsUser.All offline_access openid")
    assert t3["scope"] == "https://graph.microsoft.com/IMAP.AccessAsUser.All"
    assert idp.introspect(t3["access_token"], "imap") == {"active": False}
    c = idp.admin("counters")["introspect"]
    assert c == {"active": 5, "inactive": 5}


def test_introspection_expired_and_revoked(idp):
    a = sign_in(idp)["access_token"]
    b = sign_in(idp, user="bob@contoso.test")["access_token"]
    assert idp.admin("expire_access_tokens", {"user": "alice@contoso.test"})["expired"] == 1
    assert idp.introspect(a, "imap") == {"active": False}
    assert idp.introspect(b, "imap")["active"] is True
    idp.admin("revoke_access_tokens", {"user": "bob@contoso.test"})
    assert idp.introspect(b, "imap") == {"active": False}
    idp.settings(access_token_lifetime_s=1)
    c = sign_in(idp)["access_token"]
    assert idp.introspect(c, "smtp")["active"] is True
    time.sleep(1.1)
    assert idp.introspect(c, "smtp") == {"active": False}


def test_mint(idp):
    m = idp.admin("mint", {"user": "bob@contoso.test", "scopes": [SMTP], "lifetime_s": 60})
    assert len(m["access_token"]) >= 1500
    i = idp.introspect(m["access_token"], "smtp")
    assert i["username"] == "bob@contoso.test" and i["expires_in"] <= 60
    assert idp.introspect(m["access_token"], "imap") == {"active": False}
    m = idp.admin("mint", {"app_mailbox": "service@contoso.test"})
    assert idp.introspect(m["access_token"], "pop3")["username"] == "service@contoso.test"
    m = idp.admin("mint", {"user": "alice@contoso.test"})
    assert idp.introspect(m["access_token"], "imap")["active"] is True
    i = idp.introspect(m["access_token"], "imap")
    assert i["mailboxes"] == "shared@contoso.test"


# ----------------------------------------------------------------------------------------------
# Dovecot's password grant (stack grant mode): POST /dovecot/grant


def dovecot_grant(idp, username, token, service="smtp", grant_type="password"):
    headers = {"X-Dovecot-Auth-Service": service} if service else {}
    form = {"grant_type": grant_type, "username": username, "password": token,
            "client_id": "dovecot-test-stack"}
    return idp.s.post(idp.url("/dovecot/grant"), data=form, headers=headers)


def assert_granted(r, username):
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["username"] == username and j["active"] is True and j["token_type"] == "Bearer"
    assert isinstance(j["access_token"], str) and j["access_token"]
    assert isinstance(j["expires_in"], int) and 0 <= j["expires_in"] <= 3600
    return j


def assert_refused(r):
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_grant"}


def test_dovecot_grant_own_and_shared_mailbox(idp):
    a = sign_in(idp)["access_token"]
    for svc in ("imap", "pop3", "smtp"):
        assert_granted(dovecot_grant(idp, "alice@contoso.test", a, svc), "alice@contoso.test")
    # a shared mailbox from mailbox_access, the SASL user echoed as typed (Dovecot lower-cases)
    assert_granted(dovecot_grant(idp, "shared@contoso.test", a), "shared@contoso.test")
    assert_granted(dovecot_grant(idp, "Shared@Contoso.test", a, "imap"), "Shared@Contoso.test")
    assert_granted(dovecot_grant(idp, "ALICE@contoso.test", a), "ALICE@contoso.test")
    # no service header: no service check (as introspection)
    assert_granted(dovecot_grant(idp, "alice@contoso.test", a, None), "alice@contoso.test")
    # another user's mailbox, a mailbox alice has no access to, an unknown service
    assert_refused(dovecot_grant(idp, "bob@contoso.test", a))
    assert_refused(dovecot_grant(idp, "service@contoso.test", a))
    assert_refused(dovecot_grant(idp, "alice@contoso.test", a, "sieve"))
    # bob has no mailbox_access: shared@ is refused for him
    b = sign_in(idp, user="bob@contoso.test")["access_token"]
    assert_refused(dovecot_grant(idp, "shared@contoso.test", b))
    # mailbox_access is read at request time
    idp.settings(mailbox_access={"bob@contoso.test": ["shared@contoso.test"]})
    assert_granted(dovecot_grant(idp, "shared@contoso.test", b), "shared@contoso.test")
    assert_refused(dovecot_grant(idp, "shared@contoso.test", a))
    c = idp.admin("counters")["introspect"]
    assert c == {"active": 8, "inactive": 5}, c


def test_dovecot_grant_refusals(idp):
    a = sign_in(idp)["access_token"]
    # a token whose consent covers only SMTP.Send
    b = sign_in(idp, user="bob@contoso.test", scope=f"{SMTP} offline_access openid profile")["access_token"]
    assert_granted(dovecot_grant(idp, "bob@contoso.test", b, "smtp"), "bob@contoso.test")
    assert_refused(dovecot_grant(idp, "bob@contoso.test", b, "imap"))
    assert_refused(dovecot_grant(idp, "alice@contoso.test", "no-such-token"))
    assert_refused(dovecot_grant(idp, "alice@contoso.test", a, grant_type="client_credentials"))
    r = idp.s.post(idp.url("/dovecot/grant"), data={"grant_type": "password", "password": a})
    assert_refused(r)  # no username
    r = idp.s.post(idp.url("/dovecot/grant"), data={"grant_type": "password", "username": "alice@contoso.test"})
    assert_refused(r)  # no token
    r = idp.s.get(idp.url("/dovecot/grant"))
    assert r.status_code == 405
    # expired and revoked tokens
    idp.admin("expire_access_tokens", {"user": "alice@contoso.test"})
    assert_refused(dovecot_grant(idp, "alice@contoso.test", a))
    assert_refused(dovecot_grant(idp, "shared@contoso.test", a))
    idp.admin("revoke_access_tokens", {"user": "bob@contoso.test"})
    assert_refused(dovecot_grant(idp, "bob@contoso.test", b))


def test_dovecot_grant_app_token(idp):
    m = idp.admin("mint", {"app_mailbox": "service@contoso.test"})["access_token"]
    assert_granted(dovecot_grant(idp, "service@contoso.test", m, "smtp"), "service@contoso.test")
    assert_refused(dovecot_grant(idp, "alice@contoso.test", m, "smtp"))
    # mailbox_access is for user tokens only
    idp.settings(mailbox_access={"service@contoso.test": ["shared@contoso.test"]})
    assert_refused(dovecot_grant(idp, "shared@contoso.test", m, "smtp"))
    m2 = idp.admin("mint", {"app_mailbox": "service@contoso.test", "roles": ["IMAP.AccessAsApp"]})["access_token"]
    assert_refused(dovecot_grant(idp, "service@contoso.test", m2, "smtp"))
    assert_granted(dovecot_grant(idp, "service@contoso.test", m2, "imap"), "service@contoso.test")


def test_dovecot_grant_faults_latency_log_and_secrets(idp):
    a = sign_in(idp)["access_token"]
    # faults and latency of the endpoint name "introspect" apply (temporary-failure tests)
    idp.admin("fail", {"endpoint": "introspect", "count": 1, "status": 503})
    r = dovecot_grant(idp, "alice@contoso.test", a)
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    assert_granted(dovecot_grant(idp, "alice@contoso.test", a), "alice@contoso.test")
    idp.admin("latency", {"endpoint": "introspect", "ms": 300})
    t0 = time.monotonic()
    assert_granted(dovecot_grant(idp, "alice@contoso.test", a), "alice@contoso.test")
    assert time.monotonic() - t0 >= 0.3
    idp.admin("latency", {"endpoint": "introspect", "ms": 0})
    # recorded like introspection, the token redacted; the log line holds no secret
    rec = idp.admin("requests?endpoint=introspect")
    last = rec[-1] if isinstance(rec, list) else rec["introspect"][-1]
    assert last["params"]["username"] == "alice@contoso.test"
    assert last["params"]["password"] == f"[redacted {len(a)} chars]"
    assert last["headers"]["x-dovecot-auth-service"] == "smtp"
    issued = assert_granted(dovecot_grant(idp, "shared@contoso.test", a), "shared@contoso.test")["access_token"]
    s = set(idp.admin("secrets"))
    assert a in s and issued in s
    time.sleep(0.1)
    with open(idp.log_path, encoding="utf-8") as f:
        log = f.read()
    assert "POST /dovecot/grant 200 grant_type=password service=smtp" in log
    assert "POST /dovecot/grant 503" in log
    assert a not in log and issued not in log and "shared@contoso.test" not in log


# ----------------------------------------------------------------------------------------------
# fault injection, latency


def test_injected_503_with_retry_after_is_one_shot(idp):
    t = sign_in(idp)
    idp.admin("fail", {"endpoint": "token", "count": 1, "status": 503, "retry_after": 5})
    r = refresh(idp, t["refresh_token"])
    e = assert_ms_error(r, 503, "temporarily_unavailable", 90033)
    assert r.headers["Retry-After"] == "5"
    assert refresh(idp, t["refresh_token"]).status_code == 200


def test_injected_429_and_invalid_grant(idp):
    t = sign_in(idp)
    idp.admin("fail", {"endpoint": "token", "count": 2, "status": 429, "retry_after": 7})
    for _ in range(2):
        r = refresh(idp, t["refresh_token"])
        assert_ms_error(r, 429, "temporarily_unavailable", 90055)
        assert r.headers["Retry-After"] == "7"
    assert refresh(idp, t["refresh_token"]).status_code == 200
    # invalid_grant with a chosen code, filtered on grant type
    idp.admin("fail", {"endpoint": "token", "status": 400, "error": "invalid_grant", "aadsts": 50076,
                       "grant_type": "refresh_token"})
    code, verifier, redirect = get_code(idp)
    assert redeem(idp, code, verifier, redirect).status_code == 200  # not affected by the filter
    r = refresh(idp, t["refresh_token"])
    assert_ms_error(r, 400, "invalid_grant", 50076)
    assert "Retry-After" not in r.headers
    assert refresh(idp, t["refresh_token"]).status_code == 200


def test_injected_faults_other_endpoints(idp):
    idp.admin("fail", {"endpoint": "devicecode", "status": 500})
    r = idp.s.post(idp.url("/common/oauth2/v2.0/devicecode"), data={"client_id": PUBLIC, "scope": MAIL_SCOPES})
    assert_ms_error(r, 500, "server_error", 90000)
    start_device(idp)
    a = sign_in(idp)["access_token"]
    idp.admin("fail", {"endpoint": "introspect", "status": 503})
    r = idp.s.post(idp.url("/introspect"), data={"token": a})
    assert r.status_code == 503
    assert idp.introspect(a, "imap")["active"] is True
    idp.admin("fail", {"endpoint": "authorize", "status": 503, "retry_after": 3})
    r = idp.authorize(**auth_params())
    assert r.status_code == 503 and r.headers["Retry-After"] == "3"
    r = idp.authorize(**auth_params())
    assert r.status_code in (200, 302)


def test_latency(idp):
    idp.admin("latency", {"endpoint": "token", "ms": 300})
    t0 = time.monotonic()
    idp.token(grant_type="refresh_token", client_id=PUBLIC, refresh_token="x")
    assert time.monotonic() - t0 >= 0.3
    idp.admin("latency", {"endpoint": "token", "ms": 0})
    t0 = time.monotonic()
    idp.token(grant_type="refresh_token", client_id=PUBLIC, refresh_token="x")
    assert time.monotonic() - t0 < 0.25


def test_settings_roundtrip(idp):
    s = idp.admin("settings")
    expected = {"tenant_id": TID, "tenant_domain": "contoso.test", "auto_consent": False,
                "auto_consent_user": "alice@contoso.test", "rotation": "microsoft", "code_lifetime_s": 600,
                "access_token_lifetime_s": 3600, "access_token_length": 1600,
                "refresh_token_lifetime_s": 7776000, "device_code_lifetime_s": 900, "device_interval_s": 5,
                "device_slow_down": True, "rotation_reuse_aadsts": 70000}
    assert {k: s[k] for k in expected} == expected
    assert {u["username"] for u in s["users"]} == {f"{n}@contoso.test" for n in
                                                   ("alice", "bob", "carol", "service", "shared")}
    assert s["mailbox_access"] == {"alice@contoso.test": ["shared@contoso.test"]}
    r = idp.s.post(idp.url("/admin/settings"), json={"no_such_setting": 1})
    assert r.status_code == 400
    r = idp.s.post(idp.url("/admin/settings"), json={"rotation": "sometimes"})
    assert r.status_code == 400
    assert idp.admin("settings")["rotation"] == "microsoft"
    s2 = idp.settings(access_token_length=2000)
    assert s2["access_token_length"] == 2000
    assert len(sign_in(idp)["access_token"]) == 2000


def test_counters_and_reset(idp):
    t = sign_in(idp)
    refresh(idp, t["refresh_token"])
    refresh(idp, "bogus-refresh-token")
    idp.token(tenant=TID, grant_type="client_credentials", client_id=CONF, client_secret=SECRET,
              scope="https://outlook.office365.com/.default")
    idp.settings(device_interval_s=1)
    dc = start_device(idp)
    idp.admin("device/approve", {"user_code": dc["user_code"], "user": "alice@contoso.test"})
    assert poll(idp, dc).status_code == 200
    idp.introspect(t["access_token"], "imap")
    idp.introspect("nope")
    c = idp.admin("counters")
    assert c["token"] == {"authorization_code": 1, "refresh_token": 1, "device_code": 1, "client_credentials": 1,
                          "errors": 1}
    assert c["authorize"] == 1 and c["devicecode"] == 1
    assert c["introspect"] == {"active": 1, "inactive": 1}
    idp.admin("fail", {"endpoint": "token", "count": 5})
    idp.admin("reset", {})
    assert idp.admin("requests") == {}
    c = idp.admin("counters")
    assert c["token"]["refresh_token"] == 0 and c["authorize"] == 0 and c["introspect"]["active"] == 0
    assert idp.admin("settings")["device_interval_s"] == 5
    # tokens, consents and faults are gone
    assert idp.introspect(t["access_token"]) == {"active": False}
    assert_ms_error(refresh(idp, t["refresh_token"]), 400, "invalid_grant", 9002313)
    r = idp.token(grant_type="refresh_token", client_id=PUBLIC, refresh_token="x")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_secrets_listed_and_not_logged(idp):
    t = sign_in(idp)
    r2 = refresh(idp, t["refresh_token"]).json()
    cc = idp.token(tenant=TID, grant_type="client_credentials", client_id=CONF, client_secret=SECRET,
                   scope="https://outlook.office365.com/.default").json()
    idp.settings(device_interval_s=1)
    dc = start_device(idp)
    code, verifier, redirect = get_code(idp)
    s = set(idp.admin("secrets"))
    expected = [t["access_token"], t["refresh_token"], t["id_token"], r2["access_token"], r2["refresh_token"],
                cc["access_token"], dc["device_code"], code, SECRET]
    for v in expected:
        assert v in s
    idp.token(grant_type="refresh_token", client_id=PUBLIC, refresh_token="received-but-unknown-rt")
    assert "received-but-unknown-rt" in set(idp.admin("secrets"))
    time.sleep(0.1)
    with open(idp.log_path, encoding="utf-8") as f:
        log = f.read()
    assert "POST /common/oauth2/v2.0/token 200 grant_type=refresh_token" in log
    for v in set(idp.admin("secrets")):
        assert v not in log
    # nothing secret in the request records either
    dump = json.dumps(idp.admin("requests"))
    for v in expected:
        assert v not in dump


def test_discovery(idp):
    r = idp.s.get(idp.url(f"/{TID}/v2.0/.well-known/openid-configuration"))
    assert r.status_code == 200
    d = r.json()
    assert d["issuer"] == f"https://login.microsoftonline.com/{TID}/v2.0"
    assert d["token_endpoint"] == idp.base + f"/{TID}/oauth2/v2.0/token"


def test_optional_tokens_follow_scopes(idp):
    # no offline_access: no refresh token; no openid: no id_token
    t = sign_in(idp, scope=f"{IMAP} {SMTP}")
    assert "refresh_token" not in t and "id_token" not in t
    assert set(t["scope"].split()) == {IMAP, SMTP}
    # only OIDC scopes: a Graph token with User.Read, as Entra does
    t = sign_in(idp, user="bob@contoso.test", scope="openid profile offline_access")
    assert t["scope"] == "https://graph.microsoft.com/User.Read" and t["refresh_token"] and t["id_token"]


def test_default_scope_on_refresh_means_consented(idp):
    t = sign_in(idp, scope=f"{SMTP} offline_access openid profile")
    r = refresh(idp, t["refresh_token"], scope="https://outlook.office365.com/.default offline_access openid")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == SMTP


def test_client_request_id_echoed(idp):
    r = idp.token(headers={"client-request-id": "abc-123"}, grant_type="refresh_token", client_id=PUBLIC,
                  refresh_token="zzzzzzzzzz")
    assert r.headers["client-request-id"] == "abc-123"
    assert r.json()["correlation_id"] == "abc-123"
