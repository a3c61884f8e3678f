"""SMTP through the binding: send (with an attachment from bytes), send_mime
with bytes, bytearray and memoryview, forward of a delivered message; each
read back from the recipient's maildir."""

from __future__ import annotations

import base64
import email
import email.policy
import uuid

import pytest

import mailoauth
from binding_helpers import CAROL, eventually, sign_in, stored
from mailoauth import MailOAuthError


@pytest.fixture
def carol(ctx, idp):
    sign_in(ctx, idp, CAROL, ("smtp",))
    return ctx


def arrived(stack, address: str, needle: bytes) -> bytes:
    return eventually(lambda: next((m for m in stored(stack, address).values() if needle in m), None),
                      f"mail to {address} with {needle!r}")


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_send_with_attachment(carol, stack):
    n = uuid.uuid4().hex[:12]
    to = f"py-bind-{n}@contoso.test"
    blob = bytes(range(256)) * 4
    r = carol.smtp_send({"account": CAROL, "message": {
        "to": [to], "subject": f"Grüße {n}", "text": "Hallo\r\n.\r\nEnde",
        "attachments": [{"name": "daten.bin", "content_type": "application/octet-stream",
                         "base64": base64.b64encode(blob).decode()}]}})
    assert set(r) == {"message_id", "accepted", "server_reply"} and r["accepted"] == [to]
    msg = parse(arrived(stack, to, n.encode()))
    assert msg["Subject"] == f"Grüße {n}" and msg["Message-ID"] == r["message_id"]
    parts = [p for p in msg.iter_attachments()]
    assert parts[0].get_filename() == "daten.bin" and parts[0].get_content() == blob


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_send_mime(carol, stack, kind):
    n = uuid.uuid4().hex[:12]
    to = f"py-mime-{n}@contoso.test"
    mime = (f"From: {CAROL}\r\nTo: {to}\r\nSubject: mime {n}\r\nMessage-ID: <{n}@contoso.test>\r\n\r\n"
            f"body {n}\r\n").encode()
    r = carol.smtp_send_mime({"account": CAROL, "envelope": "from_headers"}, kind(mime))
    assert r["accepted"] == [to] and r["message_id"] == f"<{n}@contoso.test>"
    assert mime.split(b"\r\n\r\n", 1)[1] in arrived(stack, to, f"body {n}".encode())


def test_forward_as_attachment(carol, stack):
    n = uuid.uuid4().hex[:12]
    original = (f"From: someone@fabrikam.test\r\nTo: {CAROL}\r\nSubject: orig {n}\r\n"
                f"Message-ID: <orig-{n}@fabrikam.test>\r\n\r\nthe original {n}\r\n").encode()
    to = f"py-fwd-{n}@contoso.test"
    r = carol.smtp_forward({"account": CAROL, "to": [to], "mode": "attachment", "comment": "FYI"}, original)
    assert r["accepted"] == [to]
    msg = parse(arrived(stack, to, f"orig-{n}".encode()))
    inner = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    assert inner and f"the original {n}" in inner[0].as_string()


def test_missing_envelope_and_an_empty_message(carol):
    with pytest.raises(MailOAuthError) as e:
        carol.smtp_send_mime({"account": CAROL}, b"Subject: x\r\n\r\nx\r\n")
    assert e.value.code == mailoauth.INVALID_CONFIG and "envelope" in e.value.message
    # empty bytes go in as (NULL, 0): the ABI's empty message
    to = f"py-empty-{uuid.uuid4().hex[:12]}@contoso.test"
    r = carol.smtp_send_mime({"account": CAROL, "envelope": {"from": CAROL, "to": [to]}}, b"")
    assert r["accepted"] == [to]
