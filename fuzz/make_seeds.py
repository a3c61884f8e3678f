#!/usr/bin/env python3
"""Writes the hand-made seed corpus fuzz/corpus/<target>/<name>.

Realistic server replies (Dovecot and Exchange Online style), a few broken
ones, and the documents hosts write. Run from anywhere; it rewrites only the
files it names (inputs libFuzzer found and that were kept are left alone).
Session scripts: pieces separated by "~~\\n", "$T" is the client's tag (see
src/fuzzing.rs).
"""

import base64
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEP = b"~~\n"


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def script(*pieces):
    return SEP.join(p.encode() if isinstance(p, str) else p for p in pieces)


def stuff(msg):
    out = b""
    for line in msg.split(b"\r\n")[:-1] if msg.endswith(b"\r\n") else msg.split(b"\r\n"):
        out += (b"." if line.startswith(b".") else b"") + line + b"\r\n"
    return out + b".\r\n"


MSG1 = (
    b"Return-Path: <alice@contoso.test>\r\n"
    b"From: =?utf-8?B?QWxpY2UgTcO8bGxlcg==?= <alice@contoso.test>\r\n"
    b"To: Bob <bob@contoso.test>, carol@contoso.test\r\n"
    b"Subject: =?iso-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=\r\n"
    b"Date: Tue, 3 Nov 2026 09:15:00 +0100\r\n"
    b"Message-ID: <1234.5678@contoso.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hallo Bob,\r\n.\r\n..two dots\r\nbis bald\r\n"
)
MSG2 = (
    b"From: \xe4\xf6\xfc 8bit <x@contoso.test>\r\n"
    b"Subject: no message id\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nbroken mime, no closing boundary\r\n"
)
HDR1 = MSG1.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
HDR2 = MSG2.split(b"\r\n\r\n")[0] + b"\r\n\r\n"

EXO_POP_GREETING = (
    "+OK The Microsoft Exchange POP3 service is ready. "
    "[UwBOADIAUABSADAAMgBDAEEAMAAwADEANQAuAG4AYQBtAHAAcgBkADAAMgAuAHAAcgBvAGQA]\r\n"
)
EXO_CAPA = "+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n"
DOVECOT_CAPA = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nSASL XOAUTH2 OAUTHBEARER\r\n.\r\n"
EXO_ERR_CHALLENGE = "+ " + base64.b64encode(
    b'{"status":"400","schemes":"Bearer","scope":"https://outlook.office365.com/"}'
).decode() + "\r\n"


def pop3_full(greeting, capa, step=0, opts=3, pipelined=False):
    out = bytes([step, opts]) + (greeting + capa + "+ \r\n+OK User successfully authenticated.\r\n").encode()
    out += b"+OK\r\n1 AAQkADAwATM0MDAAMS1hYjI1\r\n2 AAQkADAwATM0MDAAMS1hYjI2\r\n.\r\n"
    out += b"+OK 2 messages (%d octets)\r\n1 %d\r\n2 %d\r\n.\r\n" % (len(MSG1) + len(MSG2), len(MSG1), len(MSG2))
    out += b"+OK\r\n" + stuff(HDR1) + b"+OK\r\n" + stuff(HDR2)
    out += b"+OK %d octets\r\n" % len(MSG1) + stuff(MSG1)
    out += b"+OK %d octets\r\n" % len(MSG2) + stuff(MSG2)
    out += b"+OK\r\n" + stuff(MSG1)
    out += b"+OK\r\n" + stuff(MSG1)  # retr_to
    out += b"+OK Deleted.\r\n+OK\r\n+OK\r\n+OK Microsoft Exchange Server POP3 server signing off.\r\n"
    return out


def pop3_seeds():
    put("pop3_session", "exchange_full", pop3_full(EXO_POP_GREETING, EXO_CAPA))
    put("pop3_session", "dovecot_full_pipelined", pop3_full("+OK Dovecot (Debian) ready.\r\n", DOVECOT_CAPA, step=3, opts=0b1011))
    put("pop3_session", "small_limit", pop3_full("+OK Dovecot ready.\r\n", DOVECOT_CAPA, step=0, opts=0))
    put("pop3_session", "exchange_auth_error_challenge",
        bytes([0, 3]) + (EXO_POP_GREETING + EXO_CAPA + "+ \r\n" + EXO_ERR_CHALLENGE
                         + "-ERR Authentication failure: unknown user name or bad password.\r\n").encode())
    put("pop3_session", "dovecot_auth_failed",
        bytes([0, 3]) + ("+OK Dovecot ready.\r\n" + DOVECOT_CAPA + "+ \r\n-ERR [AUTH] Authentication failed.\r\n").encode())
    put("pop3_session", "sys_temp",
        bytes([1, 3]) + ("+OK Dovecot ready.\r\n" + DOVECOT_CAPA + "+ \r\n-ERR [SYS/TEMP] Temporary authentication failure.\r\n").encode())
    put("pop3_session", "no_capa_drop_during_auth",
        bytes([0, 3]) + b"+OK hi\r\n-ERR unknown command\r\n+ \r\n")
    put("pop3_session", "only_oauthbearer",
        bytes([0, 3]) + b"+OK hi\r\n+OK\r\nSASL OAUTHBEARER\r\n.\r\n+ \r\n+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n-ERR [AUTH] no\r\n")
    put("pop3_session", "bad_greeting", bytes([0, 3]) + b"* OK IMAP here\r\n")
    put("pop3_session", "line_too_long", bytes([0, 3]) + b"+OK " + b"A" * 9000 + b"\r\n")
    put("pop3_session", "malformed_uidl",
        bytes([0, 3]) + ("+OK hi\r\n" + DOVECOT_CAPA + "+ \r\n+OK\r\n+OK\r\n0 zero\r\n.\r\n").encode())
    put("pop3_session", "retr_missing_and_truncated",
        bytes([0, 1]) + ("+OK hi\r\n" + EXO_CAPA + "+ \r\n+OK\r\n+OK\r\n1 a\r\n.\r\n+OK\r\n1 10\r\n.\r\n"
                         "+OK\r\nSubject: x\r\n.\r\n-ERR no such message\r\n+OK\r\nabc").encode())
    put("pop3_session", "body_over_limit", bytes([0, 0]) + ("+OK hi\r\n" + EXO_CAPA + "+ \r\n+OK\r\n+OK\r\n1 a\r\n.\r\n+OK\r\n1 10\r\n.\r\n"
                         "+OK\r\n" + "x" * 200 + "\r\n.\r\n+OK\r\n" + "y" * 300 + "\r\n.\r\n").encode())

    # The wire alone: [read size, body limit, line/body order] + bytes.
    put("pop3_wire", "status_lines", bytes([0, 1, 0]) + b"+OK\r\n-ERR [AUTH] no\r\n+ abc\r\n+OKAY\r\n* OK\r\n-ERR [SYS/TEMP] later\r\n[unclosed\r\n")
    put("pop3_wire", "listing_then_body", bytes([2, 1, 0b10]) + b"+OK\r\n1 000000016b0b9469\r\n2 1234\r\n.\r\n" + stuff(MSG1))
    put("pop3_wire", "bodies", bytes([0, 0x41, 0xff]) + stuff(MSG1) + stuff(MSG2) + b"a\n.\n" + b".\r\n")
    put("pop3_wire", "bare_lf_and_eof", bytes([5, 2, 0b0101]) + b"+OK\n..x\n.\nabc\r\n.")
    put("pop3_wire", "long_line", bytes([0, 1, 0]) + b"+OK " + b"z" * 8300 + b"\r\n+OK\r\n")
    put("pop3_wire", "limit_zero", bytes([0, 2, 0xff]) + b"0123456789\r\n.\r\n+OK\r\n")


EXO_IMAP_GREETING = "* OK The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADAAMgBDAEEAMAAwADEANQAuAG4AYQBtAA==]\r\n"
EXO_CAPS = "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n$T OK CAPABILITY completed.\r\n"
DOVECOT_CAPS = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=XOAUTH2 AUTH=OAUTHBEARER\r\n$T OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
DOVECOT_CAPS2 = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SPECIAL-USE CONDSTORE QRESYNC BINARY UNSELECT UIDPLUS MOVE LITERAL+ NAMESPACE\r\n$T OK Capability completed.\r\n"
EXO_SELECT = (
    "* 2 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)\r\n"
    "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)] Permanent flags\r\n"
    "* OK [UNSEEN 1] Is the first unseen message\r\n* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n"
    "* OK [UIDNEXT 9] The next unique identifier value\r\n$T OK [READ-WRITE] SELECT completed.\r\n"
)


def imap_summary(seq, uid, hdr):
    return (b"* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE \"03-Nov-2026 09:15:02 +0100\" BODY[HEADER] {%d}\r\n"
            % (seq, uid, len(MSG1), len(hdr)) + hdr + b")\r\n")


def imap_full(caps_pre, caps_post, select, order_exchange):
    pieces = [EXO_IMAP_GREETING if order_exchange else "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] Dovecot ready.\r\n",
              caps_pre, "+ \r\n", "$T OK AUTHENTICATE completed.\r\n", caps_post, select,
              "* SEARCH 7 8\r\n$T OK SEARCH completed.\r\n",
              imap_summary(1, 7, HDR1) + imap_summary(2, 8, HDR2) + b"$T OK FETCH completed.\r\n",
              b"* 1 FETCH (UID 7 RFC822.SIZE %d)\r\n* 2 FETCH (RFC822.SIZE %d UID 8)\r\n$T OK FETCH completed.\r\n" % (len(MSG1), len(MSG2)),
              # fetch_to: the body streamed to a file.
              b"* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b")\r\n$T OK FETCH completed.\r\n"]
    if order_exchange:
        # Exchange: items in its own order, a flag update in between.
        pieces.append(b"* 1 FETCH (BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b" UID 7)\r\n* 2 FETCH (FLAGS (\\Seen))\r\n"
                      b"* 2 FETCH (UID 8 BODY[] {%d}\r\n" % len(MSG2) + MSG2 + b")\r\n$T OK FETCH completed.\r\n")
    else:
        pieces.append(b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b")\r\n"
                      b"* 2 FETCH (UID 8 BODY[] {%d}\r\n" % len(MSG2) + MSG2 + b")\r\n$T OK Fetch completed (0.001 + 0.000 secs).\r\n")
    pieces += [
        b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b")\r\n$T OK FETCH completed.\r\n",
        b"* 1 FETCH (UID 7 RFC822.SIZE 321 BODY[HEADER.FIELDS (MESSAGE-ID)] {34}\r\nMessage-ID: <1234.5678@contoso>\r\n\r\n)\r\n"
        b"* 2 FETCH (UID 8 RFC822.SIZE 99 BODY[HEADER.FIELDS (MESSAGE-ID)] {2}\r\n\r\n)\r\n$T OK FETCH completed.\r\n",
        "* 1 FETCH (UID 7 FLAGS (\\Seen $Label1))\r\n$T OK FETCH completed.\r\n",
        "$T OK STORE completed.\r\n",
        "* OK [COPYUID 14 7:8 1:2] Moved\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n$T OK MOVE completed.\r\n",
        "$T OK STORE completed.\r\n",
        "* VANISHED 7:8\r\n$T OK UID EXPUNGE completed.\r\n",
        "$T OK NOOP completed.\r\n",
        "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n$T OK LOGOUT completed.\r\n",
    ]
    return bytes([11]) + script(*pieces)


def imap_seeds():
    put("imap_session", "exchange_full", imap_full(EXO_CAPS, EXO_CAPS, EXO_SELECT, True))
    put("imap_session", "dovecot_full", imap_full(DOVECOT_CAPS, DOVECOT_CAPS2, EXO_SELECT.replace("UIDVALIDITY 14", "UIDVALIDITY 1762160000"), False))
    put("imap_session", "exchange_not_connected", bytes([3]) + script(
        EXO_IMAP_GREETING, EXO_CAPS, "+ \r\n", "$T OK AUTHENTICATE completed.\r\n", EXO_CAPS,
        "$T BAD User is authenticated but not connected.\r\n"))
    put("imap_session", "exchange_authenticationfailed", bytes([3]) + script(
        EXO_IMAP_GREETING, EXO_CAPS, "+ \r\n",
        "+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL291dGxvb2sub2ZmaWNlLmNvbS8ifQ==\r\n",
        "$T NO AUTHENTICATE failed.\r\n"))
    put("imap_session", "dovecot_authenticationfailed", bytes([3]) + script(
        "* OK Dovecot ready.\r\n", DOVECOT_CAPS, "+ \r\n", "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n",
        "$T NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"))
    put("imap_session", "expired_token_bye", bytes([3]) + script(
        EXO_IMAP_GREETING, EXO_CAPS, "+ \r\n", "$T OK AUTHENTICATE completed.\r\n", EXO_CAPS, EXO_SELECT,
        "* BYE Session invalidated - AccessTokenExpired\r\n"))
    put("imap_session", "literal_over_limit", bytes([1]) + script(
        "* OK ready\r\n", DOVECOT_CAPS, "+ \r\n", "$T OK done\r\n", DOVECOT_CAPS2, EXO_SELECT,
        "* SEARCH 7\r\n$T OK done\r\n", imap_summary(1, 7, HDR1) + b"$T OK done\r\n",
        "* 1 FETCH (UID 7 RFC822.SIZE 100)\r\n$T OK done\r\n",
        "* 1 FETCH (UID 7 BODY[] {99999999999}\r\n"))
    put("imap_session", "no_uidvalidity_nonexistent", bytes([3]) + script(
        "* OK ready\r\n", DOVECOT_CAPS, "+ \r\n", "$T OK done\r\n", DOVECOT_CAPS2,
        "$T NO [NONEXISTENT] Mailbox doesn't exist: INBOX\r\n"))
    put("imap_session", "no_oauth", bytes([3]) + script("* OK ready\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN LOGINDISABLED\r\n$T OK done\r\n"))
    put("imap_session", "huge_exists", bytes([3]) + script(
        "* OK ready\r\n", DOVECOT_CAPS, "+ \r\n", "$T OK done\r\n", DOVECOT_CAPS2,
        EXO_SELECT.replace("* 2 EXISTS", "* 4294967295 EXISTS"), "* SEARCH\r\n$T OK done\r\n", "$T OK done\r\n",
        "$T OK done\r\n", "$T OK done\r\n"))

    # Our response reader: [read size, buffer size, literal limit] + bytes.
    resp = (b"* 1 FETCH (UID 5 BODY[] {12}\r\nhello\r\nworld)\r\n* 2 EXISTS\r\n"
            b"* 2 FETCH (FLAGS (\\Seen $Label) BODY[] {3}\r\nabc UID 9 INTERNALDATE \"1-Jan-2026 00:00:00 +0000\")\r\n"
            b"* 3 FETCH (UID 10 RFC822.SIZE 12 BODY[HEADER.FIELDS (MESSAGE-ID)] {13}\r\nMessage-ID:\r\n)\r\n"
            b"* 4 FETCH (UID 11 BODY[] \"q\\\"x\")\r\n* 5 FETCH (UID 12 BODY[] NIL)\r\n* 6 FETCH (FLAGS (\\Deleted))\r\n"
            b"* OK [ALERT] hi\r\n* BYE going\r\n+ idling\r\nm1 OK done\r\n")
    put("imap_resp", "mixed", bytes([0, 0, 1]) + resp)
    put("imap_resp", "mixed_small_reads", bytes([0, 1, 0]) + resp)
    put("imap_resp", "exchange_order", bytes([3, 2, 1]) + b"* 1 FETCH (BODY[] {%d}\r\n" % len(MSG1) + MSG1
        + b" UID 7)\r\n* 2 FETCH (FLAGS (\\Seen))\r\n* 3 EXPUNGE\r\n* 1 RECENT\r\n* VANISHED (EARLIER) 1:3\r\nm2 NO [EXPUNGEISSUED] some gone\r\n")
    put("imap_resp", "literal_plus_binary", bytes([1, 4, 1]) + b"* 1 FETCH (UID 1 BINARY[1] {4+}\r\n\x00\x01\x02\x03 BODY[1.MIME] {0}\r\n)\r\nm3 BAD bad\r\n")
    put("imap_resp", "too_large", bytes([0, 0, 0]) + b"* 1 FETCH (UID 5 BODY[] {101}\r\n" + b"x" * 101 + b")\r\n")
    put("imap_resp", "huge_literal", bytes([0, 0, 3]) + b"* 1 FETCH (UID 5 BODY[] {99999999999999999999999}\r\n")
    put("imap_resp", "deep_lists", bytes([0, 0, 1]) + b"* 1 FETCH (X " + b"(" * 40 + b")" * 40 + b")\r\n")
    put("imap_resp", "idle", bytes([9, 9, 1]) + b"+ idling\r\n* 3 EXISTS\r\n* OK Still here\r\nm4 OK IDLE terminated\r\n")
    put("imap_resp", "garbage", bytes([0, 0, 1]) + b"garbage\r\n* 1 FETCH (UID x)\r\n")


SMTP_EXO_GREETING = "220 AM0PR10CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready at Tue, 3 Nov 2026 08:15:00 +0000 [08DD1234ABCD5678]\r\n"
SMTP_EXO_EHLO = ("250-AM0PR10CA0001.outlook.office365.com Hello [203.0.113.7]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n"
                 "250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n")
SMTP_POSTFIX_EHLO = "250-mail.contoso.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH XOAUTH2 OAUTHBEARER\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


def smtp_seeds():
    ok = ["235 2.7.0 Authentication successful\r\n", "250 2.1.0 Sender OK\r\n", "250 2.1.5 Recipient OK\r\n",
          "250 2.1.5 Recipient OK\r\n", "354 Start mail input; end with <CRLF>.<CRLF>\r\n",
          "250 2.0.0 OK <AM0PR10MB1234.eurprd10.prod.outlook.com> [Hostname=AM0PR10MB1234.eurprd10.prod.outlook.com]\r\n",
          "221 2.0.0 Service closing transmission channel\r\n"]
    put("smtp_session", "exchange_send", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO, *ok))
    put("smtp_session", "postfix_send_8bit", bytes([1]) + script("220 mail.contoso.test ESMTP Postfix\r\n", SMTP_POSTFIX_EHLO,
                                                                  "235 2.7.0 Authentication successful\r\n", "250 2.1.0 Ok\r\n", "250 2.1.5 Ok\r\n",
                                                                  "250 2.1.5 Ok\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n", "250 2.0.0 Ok: queued as 4F1B2C0A1\r\n", "221 2.0.0 Bye\r\n"))
    put("smtp_session", "exchange_smtp_auth_disabled", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO,
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [AM0PR10CA0001.EURPRD10.PROD.OUTLOOK.COM 2026-11-03T08:15:01.000Z 08DD1234ABCD5678]\r\n"))
    put("smtp_session", "exchange_error_challenge", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO,
        "334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL291dGxvb2sub2ZmaWNlLmNvbS8ifQ==\r\n",
        "535 5.7.3 Authentication unsuccessful [AM0PR10CA0001.EURPRD10.PROD.OUTLOOK.COM]\r\n"))
    put("smtp_session", "exchange_sendas_denied", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO, ok[0],
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n"))
    put("smtp_session", "exchange_thread_limit", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO, ok[0], ok[1], ok[2],
        "452 4.3.2 Connection dropped. Sender thread limit exceeded.\r\n"))
    put("smtp_session", "rcpt_refused_then_reset", bytes([0]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO, ok[0], ok[1],
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient bob@contoso.test not found by SMTP address lookup\r\n",
        "250 2.1.5 Recipient OK\r\n", "250 2.0.0 Resetting\r\n"))
    put("smtp_session", "data_refused", bytes([1]) + script(SMTP_EXO_GREETING, SMTP_EXO_EHLO, *ok[:5],
        "554 5.2.252 SendAsDenied; user@contoso.test not allowed to send as x@contoso.test\r\n"))
    put("smtp_session", "not_smtp", bytes([0]) + script("HTTP/1.1 400 Bad Request\r\n\r\n"))
    put("smtp_session", "greeting_busy", bytes([0]) + script("421 4.3.2 Service not available, closing transmission channel\r\n"))
    put("smtp_session", "mismatched_multiline", bytes([0]) + script(SMTP_EXO_GREETING, "250-a\r\n251 b\r\n"))

    for name, reply in [
        ("auth_disabled", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n"),
        ("auth_unsuccessful", "535 5.7.3 Authentication unsuccessful [AM0PR10CA0001.EURPRD10.PROD.OUTLOOK.COM]\r\n"),
        ("sendas", "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n"),
        ("thread_limit", "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=AM0PR10MB1234]\r\n"),
        ("not_authenticated", "530 5.7.57 Client not authenticated to send mail.\r\n"),
        ("multiline", "250-first line\r\n250-second\r\n250 2.0.0 Ok: queued as 4F1B2C0A1\r\n"),
        ("challenge", "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
        ("garbage", "hello\r\n"),
        ("control", "550 5.1.1 \x07bell\x1b[31m red\r\n"),
    ]:
        put("smtp_reply", name, reply)


def idp_seeds():
    docs = {
        "invalid_grant": {"error": "invalid_grant", "error_description": "AADSTS700082: The refresh token has expired due to inactivity. Trace ID: 0a1b2c3d-0000-0000-0000-000000000000 Correlation ID: 11111111-2222-3333-4444-555555555555 Timestamp: 2026-11-03 08:15:00Z", "error_codes": [700082], "timestamp": "2026-11-03 08:15:00Z", "trace_id": "0a1b2c3d-0000-0000-0000-000000000000", "correlation_id": "11111111-2222-3333-4444-555555555555", "error_uri": "https://login.microsoftonline.com/error?code=700082"},
        "consent_required": {"error": "invalid_grant", "error_description": "AADSTS65001: The user or administrator has not consented to use the application.", "error_codes": [65001], "suberror": "consent_required"},
        "public_client": {"error": "invalid_client", "error_description": "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", "error_codes": [7000218]},
        "pending": {"error": "authorization_pending", "error_description": "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.", "error_codes": [70016]},
        "throttled": {"error": "temporarily_unavailable", "http_status": 429, "retry_after": 30},
        "server_error": {"error": "server_error", "error_description": "AADSTS90033: A transient error has occurred.", "error_codes": [90033], "http_status": 503},
        "odd_types": {"error": "access_denied", "error_codes": "nope", "trace_id": 5, "correlation_id": ["x"], "suberror": None},
        "odd_error_value": {"error": "Invalid Grant <script>", "error_codes": [18446744073709551615, -1, 1.5]},
        "http_error": {"error": "http_error", "http_status": 502},
    }
    for name, d in docs.items():
        put("idp_error", name, json.dumps(d))
    put("idp_error", "html", "<html><body>502 Bad Gateway</body></html>")
    put("idp_error", "empty", "")
    payload = base64.urlsafe_b64encode(json.dumps({"preferred_username": "Alice@Contoso.test", "oid": "o", "tid": "t", "name": "Alice M\u00fcller"}).encode()).rstrip(b"=")
    put("idp_error", "id_token", b"eyJhbGciOiJSUzI1NiJ9." + payload + b".sig")


def config_seeds():
    cfgs = {
        "minimal": {"client_id": "00000000-0000-0000-0000-000000000000", "tenant": "contoso.com", "language": "de"},
        "full": {"provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-000000000001",
                 "client_secret": "sEcReT~value.0123456789abcdef",
                 "scopes": {"smtp": "https://outlook.office.com/SMTP.Send", "app": "https://outlook.office365.com/.default"},
                 "servers": {"smtp": {"host": "smtp.office365.com", "port": 587, "security": "starttls"},
                             "imap": {"host": "outlook.office365.com", "port": 993, "security": "tls"},
                             "pop3": {"host": "outlook.office365.com", "port": 995}},
                 "trusted_hosts": ["mail.contoso.test"], "cache": {"path": "/tmp/mailoauth-fuzz-cache"},
                 "http": {"timeout_ms": 10000}, "limits": {"max_message_bytes": 1048576},
                 "redirect": {"port": 0}, "browser": "system", "language": "en"},
        "custom_provider": {"provider": "custom", "client_id": "x", "authority": "http://127.0.0.1:10088",
                            "endpoints": {"authorize": "http://127.0.0.1:10088/authorize", "token": "http://127.0.0.1:10088/token"},
                            "allow_plaintext_loopback": True},
        "unknown_key": {"client_id": "x", "servers": {"smtp": {"hots": "a"}}},
        "ignore_unknown": {"client_id": "x", "extra": 1, "ignore_unknown_keys": True},
        "wrong_type": {"client_id": 5, "tls": {"ca_file": ["a"]}},
    }
    for name, d in cfgs.items():
        put("config_json", name, json.dumps(d))
    put("config_json", "duplicate_key", '{"client_id":"a","tenant":"x","tenant":"y"}')
    put("config_json", "control_char", '{"client_id":"a\\u0000b","tenant":"x\\r\\ny"}')
    put("config_json", "not_object", "[1,2,3]")
    put("config_json", "deep", "[" * 200 + "]" * 200)
    put("config_json", "numbers", '{"a":[1e400,-0,18446744073709551616,-9223372036854775809,1.5e-400]}')
    reqs = {
        "send": {"account": "alice@contoso.test", "mailbox": "shared@contoso.test", "timeout_ms": 30000,
                 "message": {"to": ["Bob <bob@contoso.test>"], "cc": ["carol@contoso.test"], "bcc": ["dave@contoso.test"],
                             "subject": "Gr\u00fc\u00dfe", "text": "Hallo", "html": "<p>Hallo</p>",
                             "attachments": [{"name": "a.txt", "content_type": "text/plain", "base64": "aGFsbG8="}]}},
        "send_bad_address": {"account": "alice@contoso.test", "message": {"to": ["not an address"], "subject": "x\r\nBcc: evil@x"}},
        "mime": {"account": "alice@contoso.test", "envelope": {"from": "alice@contoso.test", "to": ["bob@contoso.test"]}},
        "forward": {"account": "alice@contoso.test", "to": ["bob@contoso.test"], "mode": "inline", "comment": "FYI", "reply_to_original": True},
        "open_imap": {"account": "alice@contoso.test", "protocol": "imap", "folder": "INBOX/Unterordner", "start": "new",
                      "lock_timeout_ms": 5000, "server": {"host": "127.0.0.1", "port": 1143, "security": "none"}},
        "open_pop3": {"account": "alice@contoso.test", "mailbox": "shared@contoso.test", "protocol": "pop3", "timeout_ms": -1},
        "open_bad": {"account": "a\nb", "protocol": "nntp", "folder": "", "start": "yesterday", "timeout_ms": 99999999999},
    }
    for name, d in reqs.items():
        put("config_json", "request_" + name, json.dumps(d))


def mail_seeds():
    put("mail_message", "plain", MSG1)
    put("mail_message", "broken_mime_8bit", MSG2)
    put("mail_message", "encoded_words", b"From: =?utf-8?Q?=E2=98=83?= <s@x.test>\r\nTo: " + b", ".join(b"u%d@x.test" % i for i in range(120))
        + b"\r\nSubject: =?utf-8?B?" + base64.b64encode("Grüße ".encode() * 50) + b"?=\r\nDate: 31 Feb 2026 25:61:00 +9999\r\n\r\nbody")
    put("mail_message", "no_headers", b"\r\njust a body\r\n")
    put("mail_message", "bcc_folded", b"From: a@x.test\r\nBcc: secret@x.test,\r\n  other@x.test\r\nTo: b@x.test\r\nSubject: s\r\nMessage-ID: <" + b"m" * 5000 + b"@x>\r\n\r\nbody\r\n")
    put("mail_message", "nested_multipart", b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x\r\n\r\n--b--\r\n--a--\r\n")


if __name__ == "__main__":
    pop3_seeds()
    imap_seeds()
    smtp_seeds()
    idp_seeds()
    config_seeds()
    mail_seeds()
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))))
