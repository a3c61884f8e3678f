"""Checks that the local mail stack behaves like Exchange Online, using independent clients only
(Python imaplib / poplib / smtplib + ssl with the stack's CA).

The stack is started by the test runner, not here:
    tests/stack/up.sh && python3 -m pytest tests/stack -q; tests/stack/down.sh
"""
import base64
import glob
import json
import os
import poplib
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import imaplib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
STACK_FILE = os.environ.get("MAILOAUTH_STACK_FILE", "/tmp/mailoauth-stack.json")

IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
ALL_SCOPES = [IMAP_SCOPE, POP_SCOPE, SMTP_SCOPE]
TIMEOUT = 20


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def stack():
    try:
        with open(STACK_FILE) as f:
            st = json.load(f)
    except FileNotFoundError:
        reason = "mail stack not running: %s is missing (start it with tests/stack/up.sh)" % STACK_FILE
        if os.environ.get("MAILOAUTH_REQUIRE_STACK") == "1":
            pytest.fail(reason, pytrace=False)  # under tests/run.sh a missing stack is a failure
        pytest.skip(reason)
    try:
        with urllib.request.urlopen(st["idp"]["http"] + "/health", timeout=5) as r:
            assert r.status == 200
    except Exception as e:  # the file is there but the stack is not answering: that is a failure
        pytest.fail("stack file %s exists but the IdP does not answer /health: %s" % (STACK_FILE, e))
    return st


@pytest.fixture(scope="session")
def ctx(stack):
    c = ssl.create_default_context(cafile=stack["ca_file"])
    c.check_hostname = True
    return c


class Idp:
    def __init__(self, base):
        self.base = base

    def call(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw.strip() else {}

    def mint(self, user, scopes=ALL_SCOPES, lifetime_s=3600):
        tok = self.call("/admin/mint", {"user": user, "scopes": scopes, "lifetime_s": lifetime_s})["access_token"]
        assert len(tok) >= 1500, "test tokens must be at least 1.5 KB (got %d)" % len(tok)
        return tok


@pytest.fixture(scope="session")
def idp_session(stack):
    return Idp(stack["idp"]["http"])


@pytest.fixture
def idp(idp_session):
    """The IdP admin API, reset before and after each test that changes its state."""
    idp_session.call("/admin/reset", {})
    yield idp_session
    idp_session.call("/admin/reset", {})


def xoauth2(user, token):
    return ("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()


def oauthbearer(user, token, host, port):
    return ("n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (user, host, port, token)).encode()


def b64(raw):
    return base64.b64encode(raw).decode()


def sasl_responder(payload):
    """imaplib authobject: the payload on the first (empty) challenge; an empty response to a
    server error challenge (Dovecot sends `+ <base64 JSON>`), after which the tagged NO follows."""
    state = {"sent": False}

    def respond(challenge):
        if not state["sent"]:
            state["sent"] = True
            return payload
        return b""
    return respond


def imap_connect(stack, ctx, mode, which=None):
    ep = (stack["oauthbearer"]["imap"] if which == "oauthbearer" else stack["imap"])
    if mode == "tls":
        return imaplib.IMAP4_SSL(ep["host"], ep["tls"], ssl_context=ctx, timeout=TIMEOUT), ep["tls"]
    m = imaplib.IMAP4(ep["host"], ep["starttls"], timeout=TIMEOUT)
    m.starttls(ctx)
    return m, ep["starttls"]


def imap_login(stack, ctx, mode, user, token, mech="XOAUTH2"):
    which = "oauthbearer" if mech == "OAUTHBEARER" else None
    m, port = imap_connect(stack, ctx, mode, which)
    payload = xoauth2(user, token) if mech == "XOAUTH2" else oauthbearer(user, token, stack["imap"]["host"], port)
    try:
        typ, _ = m.authenticate(mech, sasl_responder(payload))
        assert typ == "OK"
    except Exception:
        try:
            m.shutdown()
        except Exception:
            pass
        raise
    return m


def pop_connect(stack, ctx, mode, which=None):
    ep = stack["oauthbearer"]["pop3"] if which == "oauthbearer" else stack["pop3"]
    if mode == "tls":
        return poplib.POP3_SSL(ep["host"], ep["tls"], context=ctx, timeout=TIMEOUT), ep["tls"]
    p = poplib.POP3(ep["host"], ep["starttls"], timeout=TIMEOUT)
    p.stls(ctx)
    return p, ep["starttls"]


def is_challenge(line):
    return line == b"+" or line.startswith(b"+ ")


def pop_auth(p, mech, payload):
    """Two-step AUTH as Exchange wants it: `AUTH XOAUTH2`, `+ `, base64 line. Returns the final line."""
    p._putcmd("AUTH " + mech)
    line = p._getline()[0]
    if not is_challenge(line):
        return line
    p._putcmd(b64(payload))
    line = p._getline()[0]
    if is_challenge(line):  # error challenge (+ <base64 JSON>): answer with an empty line
        p._putcmd("")
        line = p._getline()[0]
    return line


def pop_login(stack, ctx, mode, user, token, mech="XOAUTH2"):
    which = "oauthbearer" if mech == "OAUTHBEARER" else None
    p, port = pop_connect(stack, ctx, mode, which)
    payload = xoauth2(user, token) if mech == "XOAUTH2" else oauthbearer(user, token, stack["pop3"]["host"], port)
    line = pop_auth(p, mech, payload)
    return p, line


def smtp_connect(stack, ctx, mode, which=None):
    ep = stack["oauthbearer"]["smtp"] if which == "oauthbearer" else stack["smtp"]
    if mode == "tls":
        s = smtplib.SMTP_SSL(ep["host"], ep["tls"], context=ctx, timeout=TIMEOUT)
        port = ep["tls"]
    else:
        s = smtplib.SMTP(ep["host"], ep["starttls"], timeout=TIMEOUT)
        s.ehlo("client.test")
        s.starttls(context=ctx)
        port = ep["starttls"]
    s.ehlo("client.test")
    return s, port


def smtp_auth(s, mech, payload):
    code, msg = s.docmd("AUTH", "%s %s" % (mech, b64(payload)))
    if code == 334:  # error challenge (Dovecot's JSON): an empty line gets the final answer
        code, msg = s.docmd("")
    return code, msg


def smtp_login(stack, ctx, mode, user, token, mech="XOAUTH2"):
    which = "oauthbearer" if mech == "OAUTHBEARER" else None
    s, port = smtp_connect(stack, ctx, mode, which)
    payload = xoauth2(user, token) if mech == "XOAUTH2" else oauthbearer(user, token, stack["smtp"]["host"], port)
    code, msg = smtp_auth(s, mech, payload)
    return s, code, msg


def maildir_of(stack, user, folder=None):
    local, domain = user.split("@")
    d = stack["maildir"].replace("%d", domain).replace("%n", local)
    if folder:
        d = os.path.join(d, "." + folder.replace("/", "."))
    return d


def maildir_files(path):
    return glob.glob(os.path.join(path, "new", "*")) + glob.glob(os.path.join(path, "cur", "*"))


def find_delivered(stack, user, marker, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for f in maildir_files(maildir_of(stack, user)):
            try:
                with open(f, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:  # moved new/ -> cur/ meanwhile
                continue
            if marker in data:
                return data
        time.sleep(0.05)
    return None


def split_body(raw):
    i = raw.find(b"\r\n\r\n")
    assert i >= 0, "no header/body separator"
    return raw[:i + 2], raw[i + 4:]


# ---------------------------------------------------------------------------------------------
# logins that must work
# ---------------------------------------------------------------------------------------------
MODES = ["starttls", "tls"]


@pytest.mark.parametrize("mode", MODES)
def test_imap_xoauth2_login(stack, ctx, idp, mode):
    tok = idp.mint("alice@contoso.test")
    m = imap_login(stack, ctx, mode, "alice@contoso.test", tok)
    try:
        # After login the session must be usable (the "authenticated but not connected" check).
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        typ, data = m.list()
        assert typ == "OK"
        typ, data = m.capability()
        caps = data[0].decode().split()
        assert "IDLE" in caps and "UIDPLUS" in caps and "MOVE" in caps, caps
    finally:
        m.logout()


def test_imap_capabilities_like_exchange(stack, ctx):
    """XOAUTH2 (and SASL-IR) offered after TLS; never OAUTHBEARER or PLAIN on the default set."""
    m, _ = imap_connect(stack, ctx, "tls")
    try:
        caps = m.capabilities
        assert "AUTH=XOAUTH2" in caps and "SASL-IR" in caps, caps
        assert "AUTH=OAUTHBEARER" not in caps and "AUTH=PLAIN" not in caps, caps
    finally:
        m.shutdown()


@pytest.mark.parametrize("mode", MODES)
def test_pop3_xoauth2_login(stack, ctx, idp, mode):
    tok = idp.mint("alice@contoso.test")
    p, line = pop_login(stack, ctx, mode, "alice@contoso.test", tok)
    try:
        assert line.startswith(b"+OK"), line
        count, size = p.stat()
        assert count >= 0
        assert p.uidl()[0].startswith(b"+OK")
    finally:
        p.quit()


@pytest.mark.parametrize("mode", MODES)
def test_smtp_xoauth2_login(stack, ctx, idp, mode):
    tok = idp.mint("alice@contoso.test")
    s, code, msg = smtp_login(stack, ctx, mode, "alice@contoso.test", tok)
    try:
        assert code == 235, (code, msg)
        assert "XOAUTH2" in s.esmtp_features.get("auth", ""), s.esmtp_features
        assert int(s.esmtp_features.get("size", "0")) >= 150 * 1024 * 1024
    finally:
        s.quit()


def test_app_token_for_app_mailbox(stack, ctx, idp):
    tok = idp.call("/admin/mint", {"app_mailbox": "service@contoso.test"})["access_token"]
    m = imap_login(stack, ctx, "tls", "service@contoso.test", tok)
    try:
        assert m.select("INBOX")[0] == "OK"
    finally:
        m.logout()
    s, code, msg = smtp_login(stack, ctx, "starttls", "service@contoso.test", tok)
    s.quit()
    assert code == 235, (code, msg)


# ---------------------------------------------------------------------------------------------
# OAUTHBEARER on the second set of ports
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_oauthbearer_imap(stack, ctx, idp, mode):
    tok = idp.mint("bob@contoso.test")
    m = imap_login(stack, ctx, mode, "bob@contoso.test", tok, mech="OAUTHBEARER")
    try:
        assert "AUTH=XOAUTH2" not in m.capabilities
        assert m.select("INBOX")[0] == "OK"
    finally:
        m.logout()


@pytest.mark.parametrize("mode", MODES)
def test_oauthbearer_pop3(stack, ctx, idp, mode):
    tok = idp.mint("bob@contoso.test")
    p, line = pop_login(stack, ctx, mode, "bob@contoso.test", tok, mech="OAUTHBEARER")
    try:
        assert line.startswith(b"+OK"), line
    finally:
        p.quit()


@pytest.mark.parametrize("mode", MODES)
def test_oauthbearer_smtp(stack, ctx, idp, mode):
    tok = idp.mint("bob@contoso.test")
    s, code, msg = smtp_login(stack, ctx, mode, "bob@contoso.test", tok, mech="OAUTHBEARER")
    try:
        assert code == 235, (code, msg)
        assert s.esmtp_features.get("auth", "").split() == ["OAUTHBEARER"], s.esmtp_features
    finally:
        s.quit()


def test_mechanism_sets_are_separate(stack, ctx):
    m, _ = imap_connect(stack, ctx, "tls", "oauthbearer")
    caps = m.capabilities
    m.shutdown()
    assert "AUTH=OAUTHBEARER" in caps and "AUTH=XOAUTH2" not in caps, caps
    s, _ = smtp_connect(stack, ctx, "starttls")
    feats = s.esmtp_features.get("auth", "").split()
    s.quit()
    assert feats == ["XOAUTH2"], feats
    p, _ = pop_connect(stack, ctx, "tls")
    capa = p.capa()
    p.quit()
    assert capa.get("SASL") == ["XOAUTH2"], capa


# ---------------------------------------------------------------------------------------------
# logins that must be refused
# ---------------------------------------------------------------------------------------------
def bad_token_cases(idp):
    """(name, user, token, protocol-or-None): tokens that must be refused."""
    good = idp.mint("alice@contoso.test")
    expired = idp.mint("carol@contoso.test")
    idp.call("/admin/expire_access_tokens", {"user": "carol@contoso.test"})
    revoked = idp.mint("bob@contoso.test")
    idp.call("/admin/revoke_access_tokens", {"user": "bob@contoso.test"})
    imap_only = idp.mint("alice@contoso.test", scopes=[IMAP_SCOPE])
    return {
        "wrong": ("alice@contoso.test", good[:-20] + "A" * 20),
        "expired": ("carol@contoso.test", expired),
        "revoked": ("bob@contoso.test", revoked),
        "other_user": ("bob@contoso.test", good),
        "wrong_scope": ("alice@contoso.test", imap_only),
    }


REFUSALS = ["wrong", "expired", "revoked", "other_user", "wrong_scope"]


@pytest.mark.parametrize("case", REFUSALS)
def test_imap_refused(stack, ctx, idp, case):
    user, tok = bad_token_cases(idp)[case]
    if case == "wrong_scope":
        # an IMAP-only token works on IMAP ...
        imap_login(stack, ctx, "tls", user, tok).logout()
        return  # it is refused on POP3 and SMTP (the tests below)
    with pytest.raises(imaplib.IMAP4.error) as ei:
        imap_login(stack, ctx, "tls", user, tok)
    assert "[AUTHENTICATIONFAILED]" in str(ei.value), str(ei.value)


@pytest.mark.parametrize("case", REFUSALS)
def test_pop3_refused(stack, ctx, idp, case):
    user, tok = bad_token_cases(idp)[case]
    p, line = pop_login(stack, ctx, "tls", user, tok)
    try:
        assert line.startswith(b"-ERR"), line
        assert b"[SYS/TEMP]" not in line, line
    finally:
        p.close()


@pytest.mark.parametrize("case", REFUSALS)
def test_smtp_refused(stack, ctx, idp, case):
    user, tok = bad_token_cases(idp)[case]
    s, code, msg = smtp_login(stack, ctx, "starttls", user, tok)
    try:
        assert code == 535, (code, msg)
        # and nothing can be sent on that connection
        code, _ = s.docmd("MAIL", "FROM:<%s>" % user)
        assert code >= 500
    finally:
        s.close()


def test_shared_mailbox_with_user_token(stack, ctx, idp):
    """Exchange lets alice open shared@ with her own token (user=shared@...). Dovecot's oauth2
    passdb compares the introspected username with the SASL user, so in the default
    (introspection) mode this is refused. See README: 'Shared mailboxes'."""
    tok = idp.mint("alice@contoso.test")
    if stack.get("dovecot", {}).get("auth_mode", "introspect") == "grant":
        imap_login(stack, ctx, "tls", "shared@contoso.test", tok).logout()
    else:
        with pytest.raises(imaplib.IMAP4.error):
            imap_login(stack, ctx, "tls", "shared@contoso.test", tok)


# ---------------------------------------------------------------------------------------------
# no authentication before TLS
# ---------------------------------------------------------------------------------------------
def test_imap_no_auth_before_starttls(stack, idp):
    tok = idp.mint("alice@contoso.test")
    m = imaplib.IMAP4(stack["imap"]["host"], stack["imap"]["starttls"], timeout=TIMEOUT)
    try:
        caps = m.capabilities
        assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
        assert not any(c.startswith("AUTH=") for c in caps), caps
        with pytest.raises(imaplib.IMAP4.error) as ei:
            m.authenticate("XOAUTH2", sasl_responder(xoauth2("alice@contoso.test", tok)))
        assert "PRIVACYREQUIRED" in str(ei.value) or "disabled" in str(ei.value).lower(), str(ei.value)
        with pytest.raises(imaplib.IMAP4.error):
            m.login("alice@contoso.test", tok)
    finally:
        m.shutdown()


def test_pop3_no_auth_before_stls(stack, idp):
    tok = idp.mint("alice@contoso.test")
    p = poplib.POP3(stack["pop3"]["host"], stack["pop3"]["starttls"], timeout=TIMEOUT)
    try:
        capa = p.capa()
        assert "STLS" in capa and not capa.get("SASL"), capa
        line = pop_auth(p, "XOAUTH2", xoauth2("alice@contoso.test", tok))
        assert line.startswith(b"-ERR"), line
        with pytest.raises(poplib.error_proto):
            p.user("alice@contoso.test")
            p.pass_(tok)
    finally:
        p.close()


def test_smtp_no_auth_before_starttls(stack, idp):
    tok = idp.mint("alice@contoso.test")
    s = smtplib.SMTP(stack["smtp"]["host"], stack["smtp"]["starttls"], timeout=TIMEOUT)
    try:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), s.esmtp_features
        code, msg = s.docmd("AUTH", "XOAUTH2 " + b64(xoauth2("alice@contoso.test", tok)))
        assert code >= 500, (code, msg)
        code, msg = s.docmd("MAIL", "FROM:<alice@contoso.test>")
        assert code >= 500, (code, msg)
    finally:
        s.close()


def test_smtp_mail_without_auth_refused(stack, ctx):
    """After STARTTLS but without AUTH, MAIL FROM is refused as on Exchange (530 5.7.57)."""
    s, _ = smtp_connect(stack, ctx, "starttls")
    try:
        code, msg = s.docmd("MAIL", "FROM:<alice@contoso.test>")
        assert code == 530 and b"5.7.57" in msg, (code, msg)
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# identity service outage
# ---------------------------------------------------------------------------------------------
def skip_if_grant(stack):
    if stack.get("dovecot", {}).get("auth_mode", "introspect") == "grant":
        pytest.skip("grant mode: Dovecot calls the grant endpoint, not /introspect")


def test_introspection_fault_is_temporary_on_imap(stack, ctx, idp):
    skip_if_grant(stack)
    tok = idp.mint("alice@contoso.test")
    idp.call("/admin/fail", {"endpoint": "introspect", "count": 1, "status": 503})
    with pytest.raises(imaplib.IMAP4.error) as ei:
        imap_login(stack, ctx, "tls", "alice@contoso.test", tok)
    assert "[UNAVAILABLE]" in str(ei.value), str(ei.value)
    imap_login(stack, ctx, "tls", "alice@contoso.test", tok).logout()  # one-shot fault


def test_introspection_fault_is_temporary_on_pop3(stack, ctx, idp):
    skip_if_grant(stack)
    tok = idp.mint("alice@contoso.test")
    idp.call("/admin/fail", {"endpoint": "introspect", "count": 1, "status": 503})
    p, line = pop_login(stack, ctx, "tls", "alice@contoso.test", tok)
    p.close()
    assert line.startswith(b"-ERR") and b"[SYS/TEMP]" in line, line
    p, line = pop_login(stack, ctx, "tls", "alice@contoso.test", tok)
    p.quit()
    assert line.startswith(b"+OK"), line


def test_introspection_fault_on_smtp_is_535(stack, ctx, idp):
    """Postfix cannot tell an outage from a bad token (test-stack.md): both are 535 5.7.8."""
    skip_if_grant(stack)
    tok = idp.mint("alice@contoso.test")
    idp.call("/admin/fail", {"endpoint": "introspect", "count": 1, "status": 503})
    s, code, msg = smtp_login(stack, ctx, "starttls", "alice@contoso.test", tok)
    s.close()
    assert code == 535, (code, msg)


# ---------------------------------------------------------------------------------------------
# delivery
# ---------------------------------------------------------------------------------------------
def make_message(sender, rcpts, marker):
    body = (
        "Hallo Bärbel,\r\n"
        "\r\n"
        "Grüße aus Köln: äöüß ÄÖÜ € 日本.\r\n"
        ".a line that starts with a dot (dot-stuffing)\r\n"
        "..two dots\r\n"
        "trailing spaces   \r\n"
        "\ttab first\r\n"
        + "x" * 990 + "\r\n"
        "From the start of a line\r\n"
        "marker %s\r\n" % marker.decode()
    ).encode("utf-8")
    headers = (
        "From: Alice <%s>\r\n"
        "To: %s\r\n"
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_?= %s\r\n"
        "Message-ID: <%s@client.test>\r\n"
        "Date: %s\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" % (sender, ", ".join(rcpts), marker.decode(), marker.decode(),
                  time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()))
    ).encode()
    return headers, body


@pytest.mark.parametrize("mode", MODES)
def test_smtp_delivery_byte_for_byte(stack, ctx, idp, mode):
    marker = uuid.uuid4().hex.encode()
    tok = idp.mint("alice@contoso.test")
    rcpts = ["bob@contoso.test", "someone@fabrikam.test"]
    headers, body = make_message("alice@contoso.test", rcpts, marker)
    s, code, msg = smtp_login(stack, ctx, mode, "alice@contoso.test", tok)
    try:
        assert code == 235, (code, msg)
        refused = s.sendmail("alice@contoso.test", rcpts, headers + body)
        assert refused == {}
    finally:
        s.quit()
    for user in rcpts:
        data = find_delivered(stack, user, marker)
        assert data is not None, "message for %s not delivered into %s" % (user, maildir_of(stack, user))
        got_headers, got_body = split_body(data)
        assert got_body == body
        assert b"Message-ID: <" + marker in got_headers
    # and bob reads the same bytes over IMAP
    m = imap_login(stack, ctx, "tls", "bob@contoso.test", idp.mint("bob@contoso.test"))
    try:
        m.select("INBOX", readonly=True)
        typ, ids = m.search(None, "HEADER", "Message-ID", marker.decode())
        assert typ == "OK" and ids[0], ids
        typ, data = m.fetch(ids[0].split()[-1], "(BODY.PEEK[TEXT])")
        assert data[0][1] == body
    finally:
        m.logout()


def test_discard_domain(stack, ctx, idp):
    marker = uuid.uuid4().hex.encode()
    dom = stack["discard_domain"]
    tok = idp.mint("alice@contoso.test")
    headers, body = make_message("alice@contoso.test", ["bench@" + dom], marker)
    s, code, msg = smtp_login(stack, ctx, "starttls", "alice@contoso.test", tok)
    try:
        assert code == 235
        assert s.sendmail("alice@contoso.test", ["bench@" + dom], headers + body) == {}
    finally:
        s.quit()
    # Postfix logs the discard; nothing lands in a maildir.
    log = stack["postfix"]["log"]
    deadline = time.time() + 15
    seen = False
    while time.time() < deadline and not seen:
        with open(log, "rb") as f:
            seen = re.search(rb"to=<bench@" + re.escape(dom.encode()) + rb">.*status=sent \(discarded", f.read()) is not None
        time.sleep(0.05)
    assert seen, "no discard in %s" % log
    root = stack["maildir"].split("%d")[0]
    assert not os.path.exists(os.path.join(root, dom))
    assert find_delivered(stack, "bench@" + dom, marker, timeout=0.5) is None


def test_no_relay_without_auth_from_loopback(stack, ctx):
    """Unauthenticated clients cannot inject mail for any domain."""
    s, _ = smtp_connect(stack, ctx, "starttls")
    try:
        code, _ = s.docmd("MAIL", "FROM:<x@fabrikam.test>")
        assert code >= 500
        code, _ = s.docmd("RCPT", "TO:<bob@contoso.test>")
        assert code >= 500
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# seeded mail is visible over IMAP and POP3 with matching sizes
# ---------------------------------------------------------------------------------------------
def run_seed(*args):
    out = subprocess.run([sys.executable, os.path.join(HERE, "seed.py")] + list(args),
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, MAILOAUTH_STACK_FILE=STACK_FILE))
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout
    return out.stdout


def virtual_size(path):
    with open(path, "rb") as f:
        data = f.read()
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def test_seeded_messages_over_imap(stack, ctx, idp):
    folder = "Seeded/%s" % uuid.uuid4().hex[:8]
    run_seed("--user", "carol@contoso.test", "--count", "40", "--size", "6000", "--folder", folder,
             "--tricky", "--big", "1")
    files = maildir_files(maildir_of(stack, "carol@contoso.test", folder))
    assert len(files) == 40 + 10 + 1
    want = sorted(virtual_size(f) for f in files)
    m = imap_login(stack, ctx, "tls", "carol@contoso.test", idp.mint("carol@contoso.test"))
    try:
        typ, data = m.select('"%s"' % folder, readonly=True)
        assert typ == "OK", data
        assert int(data[0]) == len(files)
        typ, data = m.fetch("1:*", "(RFC822.SIZE)")
        sizes = sorted(int(re.search(rb"RFC822\.SIZE (\d+)", d).group(1)) for d in data if isinstance(d, bytes))
        assert sizes == want
        # a full body fetch of a normal (CRLF) message returns the file's bytes
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        fetched = data[0][1]
        assert any(open(f, "rb").read() == fetched for f in files)
        # the tricky subjects are there
        typ, ids = m.search(None, "SUBJECT", '"Broken MIME boundary"')
        assert typ == "OK" and ids[0]
    finally:
        m.logout()


def test_seeded_messages_over_pop3(stack, ctx, idp):
    run_seed("--user", "carol@contoso.test", "--count", "25", "--size", "3000")
    files = maildir_files(maildir_of(stack, "carol@contoso.test"))
    want = sorted(virtual_size(f) for f in files)
    p, line = pop_login(stack, ctx, "starttls", "carol@contoso.test", idp.mint("carol@contoso.test"))
    try:
        assert line.startswith(b"+OK"), line
        count, total = p.stat()
        assert count == len(files)
        _, listing, _ = p.list()
        sizes = sorted(int(l.split()[1]) for l in listing)
        assert sizes == want
        assert total == sum(want)
        _, uidl, _ = p.uidl()
        assert all(re.fullmatch(rb"\d+ [0-9A-Fa-f]{16}", u) for u in uidl), uidl[:3]
        # RETR returns the file's bytes (poplib strips the CRLFs)
        _, lines, octets = p.retr(1)
        assert octets >= 0 and lines
    finally:
        p.quit()


def test_imap_idle_sees_new_mail(stack, ctx, idp):
    folder = "Idle%s" % uuid.uuid4().hex[:6]
    run_seed("--user", "alice@contoso.test", "--count", "1", "--folder", folder)
    m = imap_login(stack, ctx, "tls", "alice@contoso.test", idp.mint("alice@contoso.test"))
    try:
        m.select(folder)
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        assert m.readline().startswith(b"+")
        run_seed("--user", "alice@contoso.test", "--count", "1", "--folder", folder)
        m.sock.settimeout(10)
        line = m.readline()
        while line.startswith(b"* OK"):
            line = m.readline()
        assert re.match(rb"\* 2 EXISTS", line), line
        m.send(b"DONE\r\n")
        while not m.readline().startswith(tag):
            pass
    finally:
        m.logout()


def test_stack_file_keys(stack):
    for k in ["state_dir", "ca_file", "idp", "users", "imap", "pop3", "smtp", "oauthbearer", "maildir",
              "discard_domain", "dovecot", "postfix"]:
        assert k in stack, k
    for k in ["http", "https", "tenant", "client_id", "confidential_client_id", "client_secret", "pid", "log"]:
        assert k in stack["idp"], k
    assert stack["imap"]["host"] == os.environ.get("MAILOAUTH_MAIL_HOST", "127.0.0.2")
    assert os.path.exists(os.path.join(stack["state_dir"], "stack.env"))
    assert "%d" in stack["maildir"] and "%n" in stack["maildir"]
