"""SMTP through the C ABI from a script host (ctypes): mailoauth_smtp_send,
mailoauth_smtp_send_mime and mailoauth_smtp_forward against the stack's
Postfix, reading what was delivered back from the maildirs.

Covers: a message with a German subject, text and HTML, an attachment from
a path, Cc and Bcc; host MIME with the envelope from the headers; a forward
of a delivered message as message/rfc822; NULL arguments (outputs
untouched); bad input (invalid UTF-8, malformed JSON, unknown keys, no
recipients, CR/LF injection, negative and oversized lengths, an untrusted
server); a recipient Postfix refuses (SEND_REJECTED with `rejected`); 4 host
threads sending 25 messages each through one context; an access token
expired on the server (one forced refresh, the send succeeds); a revoked
grant (CONSENT_REQUIRED).

Senders are carol@ (and bob@ for the threads); recipients carry a per-test
nonce so that nothing another test delivered is counted.
"""

from __future__ import annotations

import ctypes
import email
import email.policy
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

import mailoauth_ctypes as mo
from stackutil import auto_consent, need

CAROL = "carol@contoso.test"
BOB = "bob@contoso.test"
SUBJECT = "Grüße aus Köln: Übergrößenträger Ä Ö Ü ä ö ü ß"
SMTP_EXPORTS = ("mailoauth_smtp_send", "mailoauth_smtp_send_mime", "mailoauth_smtp_forward")


# ---- helpers ----------------------------------------------------------------


@pytest.fixture
def nonce() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def smtp(lib, need_consent):
    need(lib, *SMTP_EXPORTS)


@pytest.fixture
def carol(ctx, idp, smtp):
    """The context, with carol's grant (browser consent, auto-approved)."""
    auto_consent(ctx, idp, account=CAROL, protocols=("smtp",))
    return ctx


def maildir(stack: dict, address: str, sub: str = "new") -> Path:
    local, domain = address.split("@", 1)
    return Path(stack["maildir"].replace("%d", domain).replace("%n", local)) / sub


def delivered(stack: dict, address: str) -> list[bytes]:
    out = []
    for sub in ("new", "cur"):
        d = maildir(stack, address, sub)
        if d.is_dir():
            out += [p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")]
    return out


def wait_mail(stack: dict, address: str, needle: bytes, timeout_s: float = 20) -> bytes:
    end = time.monotonic() + timeout_s
    while True:
        for m in delivered(stack, address):
            if needle in m:
                return m
        assert time.monotonic() < end, f"no mail to {address} containing {needle!r} within {timeout_s} s"
        time.sleep(0.05)


def wait_count(stack: dict, address: str, n: int, timeout_s: float = 60) -> int:
    end = time.monotonic() + timeout_s
    while True:
        c = len(delivered(stack, address))
        if c >= n or time.monotonic() > end:
            return c
        time.sleep(0.1)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def check_result(r: dict, n_accepted: int) -> None:
    assert set(r) == {"message_id", "accepted", "server_reply"}, r
    assert r["message_id"].startswith("<") and r["message_id"].endswith(">"), r
    assert len(r["accepted"]) == n_accepted, r
    assert r["server_reply"].startswith("250"), r


def expect(code: int, fn, *args, needle: str | None = None) -> dict:
    with pytest.raises(mo.MailOAuthError) as ei:
        fn(*args)
    e = ei.value
    assert e.code == code, (e.name, e.error)
    assert e.error["code"] == code and e.error["name"] == e.name, e.error
    if needle is not None:
        assert needle in e.message, (needle, e.message)
    return e.error


SENTINEL = 0x5E5E5E5E


def raw_out(lib, name: str, *args) -> tuple[int, int, dict]:
    """Calls an export with a sentinel output; (rc, output value, last error)."""
    out = ctypes.c_void_p(SENTINEL)
    rc = getattr(lib.raw, name)(*args, ctypes.byref(out))
    err = lib.last_error()
    if rc == mo.OK:
        lib.take_json(out)
    return rc, out.value, err


# ---- success ----------------------------------------------------------------


def test_send_arrives_intact(carol, stack, tmp_path, nonce):
    to, cc, bcc = (f"{k}-{nonce}@contoso.test" for k in ("py-to", "py-cc", "py-bcc"))
    blob = bytes(range(256)) * 12 + b"\r\n.\r\n" + os.urandom(1000)
    path = tmp_path / "bericht-märz.bin"
    path.write_bytes(blob)
    text = "Hallo Bob,\nanbei der Bericht für März.\nViele Grüße"
    html = "<p>Hallo Bob,<br>anbei der Bericht für <b>März</b>.</p>"
    r = carol.smtp_send(
        {
            "account": CAROL,
            "message": {
                "from": f"Carol Müller <{CAROL}>",
                "to": [f"Bob Bär <{to}>"],
                "cc": [cc],
                "bcc": [bcc],
                "subject": f"{SUBJECT} {nonce}",
                "text": text,
                "html": html,
                "attachments": [
                    {"name": "bericht.bin", "content_type": "application/octet-stream", "path": str(path)}
                ],
            },
        }
    )
    check_result(r, 3)
    raw = wait_mail(stack, to, nonce.encode())
    m = parse(raw)
    assert m["Subject"] == f"{SUBJECT} {nonce}"
    raw_subject = [ln for ln in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if ln.lower().startswith(b"subject:")]
    assert raw_subject and raw_subject[0].isascii(), raw_subject  # RFC 2047 on the wire
    assert "Carol Müller" in str(m["From"]) and CAROL in str(m["From"])
    assert "Bob Bär" in str(m["To"])
    assert cc in str(m["Cc"])
    assert m["Message-ID"] == r["message_id"]
    assert m["Date"] is not None
    assert m["Bcc"] is None and bcc.encode() not in raw
    body_text = m.get_body(("plain",)).get_content()
    body_html = m.get_body(("html",)).get_content()
    assert body_text.replace("\r\n", "\n").rstrip("\n") == text
    assert body_html.replace("\r\n", "\n").rstrip("\n") == html
    atts = list(m.iter_attachments())
    assert len(atts) == 1 and atts[0].get_filename() == "bericht.bin"
    assert atts[0].get_content_type() == "application/octet-stream"
    assert atts[0].get_content() == blob
    assert parse(wait_mail(stack, bcc, nonce.encode()))["Bcc"] is None
    wait_mail(stack, cc, nonce.encode())


def test_send_mime_from_headers(carol, stack, nonce):
    to, bcc = f"py-mime-{nonce}@contoso.test", f"py-mime-bcc-{nonce}@contoso.test"
    mime = (
        f"From: Carol <{CAROL}>\nTo: {to}\nBcc: {bcc}\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= {nonce}\n"
        f"Message-ID: <py-{nonce}@contoso.test>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        f"Zeile mit äöü\n.Punktzeile\nEnde {nonce}\n"
    ).encode()
    r = carol.smtp_send_mime({"account": CAROL, "envelope": "from_headers"}, mime)
    check_result(r, 2)
    assert r["message_id"] == f"<py-{nonce}@contoso.test>"
    raw = wait_mail(stack, to, nonce.encode())
    assert b"\nBcc:" not in raw and bcc.encode() not in raw
    assert f"\r\n\r\nZeile mit äöü\r\n.Punktzeile\r\nEnde {nonce}\r\n".encode() in raw
    assert parse(raw)["Subject"] == f"Grüße {nonce}"
    assert b"\nBcc:" not in wait_mail(stack, bcc, nonce.encode())


def test_forward_as_attachment(carol, stack, nonce):
    src = f"py-orig-{nonce}@contoso.test"
    carol.smtp_send({"account": CAROL, "message": {"to": [src], "subject": f"{SUBJECT} {nonce}", "text": "Original äöü"}})
    original = wait_mail(stack, src, nonce.encode())
    fwd = f"py-fwd-{nonce}@contoso.test"
    r = carol.smtp_forward(
        {"account": CAROL, "to": [fwd], "mode": "attachment", "comment": "Siehe unten – weitergeleitet"}, original
    )
    check_result(r, 1)
    raw = wait_mail(stack, fwd, nonce.encode())
    m = parse(raw)
    assert CAROL in str(m["From"])
    assert SUBJECT in m["Subject"]
    parts = [p for p in m.walk() if p.get_content_type() == "message/rfc822"]
    assert len(parts) == 1
    assert (parts[0]["Content-Transfer-Encoding"] or "7bit").lower() in ("7bit", "8bit")
    inner = parts[0].get_content()
    assert inner["Subject"] == f"{SUBJECT} {nonce}"
    assert "Original äöü" in inner.get_body(("plain",)).get_content()
    assert "weitergeleitet" in m.get_body(("plain",)).get_content()


# ---- NULL and bad input -----------------------------------------------------


def test_null_arguments(lib, ctx, smtp):
    h = ctx.handle
    req = b'{"account":"carol@contoso.test","message":{"to":["x@discard.test"],"text":"x"}}'
    mreq = b'{"account":"carol@contoso.test","envelope":"from_headers"}'
    data = b"From: carol@contoso.test\r\nTo: x@discard.test\r\n\r\nx\r\n"
    buf = ctypes.create_string_buffer(data, len(data))
    cases = [
        ("mailoauth_smtp_send", (None, req), "ctx"),
        ("mailoauth_smtp_send", (h, None), "request_json"),
        ("mailoauth_smtp_send_mime", (None, mreq, buf, len(data)), "ctx"),
        ("mailoauth_smtp_send_mime", (h, None, buf, len(data)), "request_json"),
        ("mailoauth_smtp_send_mime", (h, mreq, None, len(data)), "mime"),
        ("mailoauth_smtp_forward", (None, req, buf, len(data)), "ctx"),
        ("mailoauth_smtp_forward", (h, None, buf, len(data)), "request_json"),
        ("mailoauth_smtp_forward", (h, req, None, len(data)), "original"),
    ]
    for name, args, param in cases:
        rc, out, err = raw_out(lib, name, *args)
        assert rc == mo.INVALID_ARGUMENT and f"'{param}'" in err["message"], (name, param, err)
        assert out == SENTINEL, (name, param)
    for name, args in [
        ("mailoauth_smtp_send", (h, req)),
        ("mailoauth_smtp_send_mime", (h, mreq, buf, len(data))),
        ("mailoauth_smtp_forward", (h, req, buf, len(data))),
    ]:
        assert getattr(lib.raw, name)(*args, None) == mo.INVALID_ARGUMENT
        assert "'out_json'" in lib.last_error()["message"]


BAD_UTF8 = [b'{"account":"\xff"}', b'{"account":"carol\xc0\xaf@contoso.test"}', b'{"account":"\xed\xa0\x80"}']


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8(lib, ctx, smtp, bad):
    data = b"From: a@contoso.test\r\n\r\nx"
    buf = ctypes.create_string_buffer(data, len(data))
    for name, args in [
        ("mailoauth_smtp_send", (ctx.handle, bad)),
        ("mailoauth_smtp_send_mime", (ctx.handle, bad, buf, len(data))),
        ("mailoauth_smtp_forward", (ctx.handle, bad, buf, len(data))),
    ]:
        rc, out, err = raw_out(lib, name, *args)
        assert rc == mo.INVALID_ARGUMENT and "request_json" in err["message"] and "UTF-8" in err["message"], err
        assert out == SENTINEL


def _send(ctx, msg: dict, **common):
    return ctx.smtp_send({"account": CAROL, "message": msg, **common})


@pytest.mark.parametrize(
    "request_json, code, needle",
    [
        ('{"account":', mo.INVALID_CONFIG, "JSON"),
        ("[]", mo.INVALID_CONFIG, "object"),
        ({"account": CAROL, "messgae": {"to": ["a@contoso.test"]}}, mo.INVALID_CONFIG, "messgae"),
        ({"account": CAROL, "message": {"to": ["a@contoso.test"], "sbuject": "x"}}, mo.INVALID_CONFIG, "message.sbuject"),
        ({"account": CAROL, "message": {"to": [], "text": "x"}}, mo.INVALID_CONFIG, "recipients"),
        ({"account": CAROL, "message": {"text": "x"}}, mo.INVALID_CONFIG, "recipients"),
        ({"account": CAROL, "message": {"to": ["a@contoso.test\r\nRCPT TO:<e@x.test>"]}}, mo.INVALID_ARGUMENT, "message.to[0]"),
        ({"account": CAROL, "message": {"to": ["a@contoso.test"], "bcc": ["b@contoso.test\n"]}}, mo.INVALID_ARGUMENT, "message.bcc[0]"),
        ({"account": CAROL, "message": {"to": ["a@contoso.test"], "subject": "x\r\nBcc: e@x.test"}}, mo.INVALID_ARGUMENT, "message.subject"),
        ({"account": CAROL, "message": {"to": ["a@contoso.test"], "attachments": [{"name": "a", "path": "/nonexistent/fehlt.pdf"}]}}, mo.INVALID_ARGUMENT, "fehlt.pdf"),
        ({"account": CAROL, "server": {"host": "smtp.evil.test", "port": 587, "security": "starttls"}, "message": {"to": ["a@contoso.test"]}}, mo.UNTRUSTED_HOST, "smtp.evil.test"),
    ],
)
def test_bad_send_requests(ctx, smtp, request_json, code, needle):
    e = expect(code, ctx.smtp_send, request_json, needle=needle)
    assert e["name"]


def test_bad_mime_and_forward(lib, ctx, smtp, stack, nonce):
    victim = f"py-bad-{nonce}@contoso.test"
    data = f"From: {CAROL}\r\nTo: {victim}\r\nSubject: x\r\n\r\nx\r\n".encode()
    expect(mo.INVALID_CONFIG, ctx.smtp_send_mime, {"account": CAROL}, data, needle="envelope")
    expect(mo.INVALID_CONFIG, ctx.smtp_send_mime, {"account": CAROL, "envelope": "from_headers", "x": 1}, data, needle="'x'")
    expect(mo.INVALID_ARGUMENT, ctx.smtp_send_mime,
           {"account": CAROL, "envelope": {"from": CAROL, "to": [victim + "\r\nDATA"]}}, data, needle="envelope.to[0]")
    expect(mo.INVALID_CONFIG, ctx.smtp_forward, {"account": CAROL, "to": [victim], "mode": "bounce"}, data, needle="mode")
    expect(mo.INVALID_ARGUMENT, ctx.smtp_forward, {"account": CAROL, "to": [victim + "\n"]}, data, needle="to[0]")
    buf = ctypes.create_string_buffer(data, len(data))
    mreq = b'{"account":"carol@contoso.test","envelope":"from_headers"}'
    freq = ('{"account":"carol@contoso.test","to":["%s"]}' % victim).encode()
    for name, req in (("mailoauth_smtp_send_mime", mreq), ("mailoauth_smtp_forward", freq)):
        param = "mime_len" if "mime" in name else "original_len"
        for n in (-1, -(2**63)):
            rc, out, err = raw_out(lib, name, ctx.handle, req, buf, n)
            assert rc == mo.INVALID_ARGUMENT and param in err["message"], err
            assert out == SENTINEL
        # far past the buffer: refused before a byte is read
        for n in (2**63 - 1, 157286400 + 1):
            rc, out, err = raw_out(lib, name, ctx.handle, req, buf, n)
            assert rc == mo.TOO_LARGE and "max_message_bytes" in err["message"], err
            assert out == SENTINEL
    time.sleep(0.3)
    assert delivered(stack, victim) == []


def test_limit_and_language(lib, stack, cache_dir, smtp):
    from stackutil import make_config

    with lib.context(make_config(stack, cache_dir, limits={"max_message_bytes": 1024}, language="de")) as c:
        big = b"From: carol@contoso.test\r\nTo: a@contoso.test\r\n\r\n" + b"x" * 2000
        e = expect(mo.TOO_LARGE, c.smtp_send_mime, {"account": CAROL, "envelope": "from_headers"}, big)
        assert "max_message_bytes" in e["message"] and "größer" in e["message"]
        expect(mo.TOO_LARGE, c.smtp_forward, {"account": CAROL, "to": ["a@contoso.test"]}, big)
        expect(mo.TOO_LARGE, _send, c, {"to": ["a@contoso.test"], "text": "y" * 2000})
        expect(mo.INVALID_CONFIG, c.smtp_send, {"account": CAROL, "messgae": {}}, needle="unbekannter Schlüssel")


# ---- refusals by the server -------------------------------------------------


def test_refused_recipient_sends_nothing(carol, stack, nonce):
    good = f"py-rej-{nonce}@contoso.test"
    with pytest.raises(mo.MailOAuthError) as ei:
        _send(carol, {"to": [good, "nobody@1.2.3.4"], "subject": nonce, "text": "x"})
    e = ei.value
    assert e.code == mo.SEND_REJECTED, e.error
    assert e.error["rejected"] == ["nobody@1.2.3.4"]
    assert e.error["server_reply"].startswith("5")
    assert "nobody@1.2.3.4" in e.message
    time.sleep(0.5)
    assert delivered(stack, good) == []
    check_result(_send(carol, {"to": [good], "subject": nonce, "text": "after"}), 1)
    wait_mail(stack, good, nonce.encode())


# ---- many threads, one context ----------------------------------------------


def test_four_threads_send_100(ctx, idp, smtp, stack, nonce):
    auto_consent(ctx, idp, account=BOB, protocols=("smtp",))
    to = f"py-threads-{nonce}@contoso.test"
    errors: list = []

    def worker(t: int) -> None:
        for i in range(25):
            try:
                r = ctx.smtp_send(
                    {"account": BOB, "message": {"to": [to], "subject": f"T{t:02d}-{i:02d} {nonce}", "text": "ü"}}
                )
                assert r["accepted"] == [to]
            except Exception as ex:  # noqa: BLE001 - collected and reported below
                errors.append((t, i, repr(ex)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.monotonic() - t0
    assert not errors, errors[:5]
    assert wait_count(stack, to, 100) == 100
    subjects = {parse(m)["Subject"].split()[0] for m in delivered(stack, to)}
    assert subjects == {f"T{t:02d}-{i:02d}" for t in range(4) for i in range(25)}
    print(f"100 messages from 4 threads in {elapsed:.2f} s")


# ---- tokens -----------------------------------------------------------------


def test_expired_token_is_refreshed_once(carol, lib, config, idp, stack, nonce):
    to = f"py-exp-{nonce}@contoso.test"
    check_result(_send(carol, {"to": [to], "subject": f"1 {nonce}", "text": "x"}), 1)
    before = idp.grants("refresh_token")
    assert idp._post("/admin/expire_access_tokens", {"user": CAROL})["expired"] >= 1
    # A pooled connection stays authenticated (the server checks the token
    # at AUTH only), so a second context over the same cache opens a new
    # one: AUTH with the cached, server-expired token, 535, one forced
    # refresh, the retry succeeds.
    with lib.context(config) as fresh:
        check_result(_send(fresh, {"to": [to], "subject": f"2 {nonce}", "text": "x"}), 1)
        assert idp.grants("refresh_token") == before + 1
        check_result(_send(fresh, {"to": [to], "subject": f"3 {nonce}", "text": "x"}), 1)
    assert idp.grants("refresh_token") == before + 1
    assert wait_count(stack, to, 3) == 3


def test_revoked_grant_needs_consent(carol, lib, config, idp, stack, nonce):
    to = f"py-rev-{nonce}@contoso.test"
    check_result(_send(carol, {"to": [to], "subject": f"1 {nonce}", "text": "x"}), 1)
    idp.revoke_refresh_tokens(user=CAROL)
    idp._post("/admin/expire_access_tokens", {"user": CAROL})
    with lib.context(config) as fresh:  # a new connection (see above)
        expect(mo.CONSENT_REQUIRED, _send, fresh, {"to": [to], "subject": f"2 {nonce}", "text": "x"})
    time.sleep(0.3)
    assert len(delivered(stack, to)) == 1
