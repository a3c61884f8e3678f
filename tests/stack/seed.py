#!/usr/bin/env python3
"""Seed a user's Maildir on the mailoauth test stack, straight on disk (no SMTP), fast.

    tests/stack/seed.py --user alice@contoso.test --count 1000 [--size 20000]
                        [--folder INBOX|Archive|"Sent Items"|A/B] [--tricky] [--big MB] [--seed N]

Messages go to <maildir>/new (or <maildir>/.Folder/new), written via tmp/ and renamed, owned
like Dovecot's own files (the `mail` user). The maildir pattern comes from the stack file
(${MAILOAUTH_STACK_FILE:-/tmp/mailoauth-stack.json}, key "maildir"), or --maildir.
Files use CRLF line ends, so IMAP RFC822.SIZE and POP3 LIST sizes equal the file size
(except the deliberately bare-LF --tricky message). Prints how many messages it wrote and
the total bytes.
"""
import argparse
import base64
import json
import os
import pwd
import random
import socket
import sys
import time
import zlib

STACK_FILE = os.environ.get("MAILOAUTH_STACK_FILE", "/tmp/mailoauth-stack.json")

FIRST = ["Jürgen", "Änne", "Björn", "Zoë", "Øystein", "Mårten", "François", "Ana", "Li", "Sam",
         "Grüße", "Ülrich", "Maria", "Chen", "Olga", "Dmitri"]
LAST = ["Müller", "Schäfer", "Köhler", "Weiß", "Groß", "Jäger", "Smith", "Núñez", "Öztürk",
        "Lindqvist", "Nguyen", "Kowalski"]
WORDS = ("report meeting budget invoice quarterly review draft final update schedule project "
         "customer delivery Straße Größe Überweisung Bestätigung Prüfung Äpfel Öl Fähre Büro "
         "naïve café résumé 日本 данные"
         ).split()
DOMAINS = ["contoso.test", "fabrikam.test", "example.org", "northwind.test"]


def q_encode(text):
    """RFC 2047 Q encoding (UTF-8)."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c == " ":
            out.append("_")
        elif c.isalnum() and b < 128:
            out.append(c)
        else:
            out.append("=%02X" % b)
    return "=?UTF-8?Q?" + "".join(out) + "?="


def b_encode(text):
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode() + "?="


def enc_header(text, rnd):
    if all(ord(c) < 128 for c in text):
        return text
    return q_encode(text) if rnd.random() < 0.5 else b_encode(text)


def fold_b64(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def qp_line(text):
    """Minimal quoted-printable for one UTF-8 line (soft breaks at 76)."""
    out, cur = [], ""
    for b in text.encode("utf-8"):
        c = chr(b)
        piece = c if (32 < b < 127 and c != "=") or c == " " else "=%02X" % b
        if len(cur) + len(piece) > 75:
            out.append(cur + "=")
            cur = ""
        cur += piece
    if cur.endswith(" "):
        cur = cur[:-1] + "=20"
    out.append(cur)
    return "\r\n".join(out)


class Gen:
    def __init__(self, user, seed):
        self.user = user
        self.rnd = random.Random(seed)
        self.host = "seed.contoso.test"
        self.blob = bytes(self.rnd.getrandbits(8) for _ in range(1 << 16))
        self.t0 = int(time.time()) - 86400 * 30

    def person(self):
        r = self.rnd
        first, last = r.choice(FIRST), r.choice(LAST)
        local = ("%s.%s" % (first, last)).encode("ascii", "ignore").decode().lower() or "someone"
        return "%s %s" % (first, last), "%s@%s" % (local, r.choice(DOMAINS))

    def sentence(self, n):
        return " ".join(self.rnd.choice(WORDS) for _ in range(n))

    def _pool(self):
        # A pool of prepared lines (plain and quoted-printable), so that 10,000 messages take
        # about a second: bodies are random runs of pool lines.
        if not hasattr(self, "_lines"):
            self._lines = [self.sentence(self.rnd.randint(4, 12)).capitalize() + "." for _ in range(512)]
            self._plain = [l.encode("utf-8") for l in self._lines]
            self._qp = [qp_line(l).encode("ascii") for l in self._lines]
        return self._plain, self._qp

    def body(self, size, qp):
        plain, qps = self._pool()
        lines = qps if qp else plain
        out, total = [], 0
        i = self.rnd.randrange(len(lines))
        while total < size:
            l = lines[i % len(lines)]
            out.append(l)
            total += len(l) + 2
            i += self.rnd.randint(1, 7)
        return b"\r\n".join(out)

    def headers(self, i, date, subject, extra=()):
        name, addr = self.person()
        h = [
            "Return-Path: <%s>" % addr,
            "Received: from mail.fabrikam.test (mail.fabrikam.test [127.0.0.2])\r\n"
            "\tby mail.contoso.test with ESMTPS id seed%08x; %s" % (i, fmt_date(date)),
            "From: %s <%s>" % (enc_header(name, self.rnd), addr),
            "To: %s" % self.user,
            "Subject: %s" % subject,
            "Date: %s" % fmt_date(date),
            "Message-ID: <seed.%d.%08x@%s>" % (i, self.rnd.getrandbits(32), self.host),
            "MIME-Version: 1.0",
        ]
        h.extend(extra)
        return h

    def message(self, i, size):
        """One normal message of about `size` bytes; returns (bytes, date)."""
        r = self.rnd
        date = self.t0 + i * 37 + r.randint(0, 30)
        subj_text = "%s %d: %s" % (r.choice(["Re:", "AW:", "WG:", "", "Fwd:"]), i, self.sentence(r.randint(2, 6)))
        subject = enc_header(subj_text.strip(), r)
        kind = r.random()
        if kind < 0.25 and size > 3000:
            # multipart/mixed with a base64 attachment
            bnd = "----=_Part_%d_%08x" % (i, r.getrandbits(32))
            att_len = max(200, int(size * 0.7 * 3 / 4))
            off = r.randint(0, len(self.blob) - 1)
            att = (self.blob[off:] + self.blob) * (att_len // len(self.blob) + 1)
            att = att[:att_len]
            fname = r.choice(["Bericht_Übersicht.pdf", "invoice.pdf", "Präsentation.pptx", "data.bin"])
            body = self.body(max(100, size - att_len * 4 // 3 - 900), True).decode()
            parts = [
                "This is a multi-part message in MIME format.",
                "--" + bnd,
                "Content-Type: text/plain; charset=UTF-8",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                body,
                "--" + bnd,
                "Content-Type: application/octet-stream; name=\"%s\"" % enc_header(fname, r),
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment; filename*=UTF-8''%s" % urlq(fname),
                "",
                fold_b64(att),
                "--" + bnd + "--",
                "",
            ]
            hdr = self.headers(i, date, subject, ["Content-Type: multipart/mixed; boundary=\"%s\"" % bnd])
            text = "\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(parts)
        elif kind < 0.6:
            body = self.body(max(50, size - 700), True).decode()
            hdr = self.headers(i, date, subject, ["Content-Type: text/plain; charset=UTF-8",
                                                  "Content-Transfer-Encoding: quoted-printable"])
            text = "\r\n".join(hdr) + "\r\n\r\n" + body + "\r\n"
        else:
            body = self.body(max(50, size - 700), False).decode("utf-8")
            hdr = self.headers(i, date, subject, ["Content-Type: text/plain; charset=UTF-8",
                                                  "Content-Transfer-Encoding: 8bit"])
            text = "\r\n".join(hdr) + "\r\n\r\n" + body + "\r\n"
        return text.encode("utf-8"), date

    def big(self, i, mb):
        date = self.t0 + i * 37
        bnd = "----=_Big_%08x" % self.rnd.getrandbits(32)
        target = int(mb * 1024 * 1024)
        raw_len = target * 3 // 4
        reps = raw_len // len(self.blob) + 1
        att = (self.blob * reps)[:raw_len]
        hdr = self.headers(i, date, enc_header("Große Datei (%s MB)" % mb, self.rnd),
                           ["Content-Type: multipart/mixed; boundary=\"%s\"" % bnd])
        text = ("\r\n".join(hdr) + "\r\n\r\n--" + bnd +
                "\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nAnbei die große Datei.\r\n--" + bnd +
                "\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n")
        return text.encode("utf-8") + fold_b64(att).encode() + ("\r\n--" + bnd + "--\r\n").encode(), date

    def tricky(self, i0):
        """Deliberately odd messages: [(name, bytes, date)]."""
        d = self.t0 + i0 * 37
        u = self.user
        out = []
        out.append(("raw-8bit-header", (
            "From: Jürgen Müller <juergen@fabrikam.test>\r\nTo: %s\r\n"
            "Subject: Grüße aus Köln – raw UTF-8 in the header\r\nDate: %s\r\n"
            "Message-ID: <tricky.8bit@seed.contoso.test>\r\n\r\nRohe 8-Bit-Kopfzeilen.\r\n" % (u, fmt_date(d))
        ).encode("utf-8")))
        out.append(("latin1-header", (
            "From: =?ISO-8859-1?Q?J=FCrgen?= <j@fabrikam.test>\r\nTo: %s\r\nSubject: " % u
        ).encode() + "Übergröße in Latin-1".encode("latin-1") + (
            "\r\nDate: %s\r\nMessage-ID: <tricky.latin1@seed.contoso.test>\r\n"
            "Content-Type: text/plain; charset=ISO-8859-1\r\n\r\n" % fmt_date(d + 1)
        ).encode() + "Größe: 8-bit Latin-1 body.\r\n".encode("latin-1")))
        out.append(("no-message-id", (
            "From: nobody@fabrikam.test\r\nTo: %s\r\nSubject: No Message-ID here\r\n"
            "Date: %s\r\n\r\nThis message has no Message-ID header.\r\n" % (u, fmt_date(d + 2))
        ).encode()))
        out.append(("bare-lf", (
            "From: unix@fabrikam.test\nTo: %s\nSubject: Bare LF line ends\nDate: %s\n"
            "Message-ID: <tricky.barelf@seed.contoso.test>\n\nline one\nline two\r\nmixed CRLF line\nlast\n"
            % (u, fmt_date(d + 3))).encode()))
        out.append(("broken-boundary", (
            "From: mime@fabrikam.test\r\nTo: %s\r\nSubject: Broken MIME boundary\r\nDate: %s\r\n"
            "Message-ID: <tricky.boundary@seed.contoso.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"declared-boundary\"\r\n\r\n"
            "--other-boundary\r\nContent-Type: text/plain\r\n\r\nThe declared boundary never appears.\r\n"
            "--declared-boundary-but-not-quite\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nVGhpcyBpcyBub3QgY2xvc2Vk\r\n" % (u, fmt_date(d + 4))
        ).encode()))
        inner = ("From: =?UTF-8?Q?B=C3=A4rbel?= <baerbel@fabrikam.test>\r\nTo: carol@contoso.test\r\n"
                 "Subject: =?UTF-8?B?%s?=\r\nDate: %s\r\nMessage-ID: <inner@seed.contoso.test>\r\n"
                 "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nInnere Nachricht: Ölfässer.\r\n"
                 % (base64.b64encode("Weitergeleitet: Überraschung".encode()).decode(), fmt_date(d - 100)))
        out.append(("nested-rfc822", (
            "From: forwarder@fabrikam.test\r\nTo: %s\r\nSubject: Fwd: nested message/rfc822\r\nDate: %s\r\n"
            "Message-ID: <tricky.nested@seed.contoso.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n\r\nSee the attached message.\r\n--outer\r\n"
            "Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n%s\r\n--outer--\r\n"
            % (u, fmt_date(d + 5), inner)).encode("utf-8")))
        refs = " ".join("<ref.%d.%s@seed.contoso.test>" % (k, "x" * 20) for k in range(250))
        out.append(("long-header", (
            "From: long@fabrikam.test\r\nTo: %s\r\nSubject: %s\r\nReferences: %s\r\nDate: %s\r\n"
            "Message-ID: <tricky.long@seed.contoso.test>\r\n\r\nA 6 KB unfolded subject and a 12 KB References line.\r\n"
            % (u, "Long subject " + "ä" * 3000, refs, fmt_date(d + 6))).encode("utf-8")))
        out.append(("quotes-group", (
            "From: \"Doe, \\\"JD\\\" John\" <jd@fabrikam.test>\r\nTo: undisclosed-recipients:;\r\n"
            "Cc: Team: a@contoso.test, b@contoso.test;\r\nSubject: Quotes \"and\" back\\slashes\r\n"
            "Date: %s\r\nMessage-ID: <tricky.quotes@seed.contoso.test>\r\n\r\nGroup syntax.\r\n"
            % fmt_date(d + 7)).encode()))
        out.append(("nul-8bit-body", (
            "From: bin@fabrikam.test\r\nTo: %s\r\nSubject: NUL and 8-bit bytes in the body\r\nDate: %s\r\n"
            "Message-ID: <tricky.nul@seed.contoso.test>\r\n\r\n" % (u, fmt_date(d + 8))
        ).encode() + b"before\x00after \xff\xfe\x80 raw\r\n"))
        out.append(("no-final-crlf", (
            "From: eof@fabrikam.test\r\nTo: %s\r\nSubject: No CRLF at the end\r\nDate: %s\r\n"
            "Message-ID: <tricky.eof@seed.contoso.test>\r\n\r\nThe last line has no line end."
            % (u, fmt_date(d + 9))).encode()))
        return [(n, b, d + k) for k, (n, b) in enumerate(out)]


def urlq(s):
    return "".join(c if c.isalnum() and ord(c) < 128 or c in "._-" else
                   "".join("%%%02X" % b for b in c.encode()) for c in s)


def fmt_date(t):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))


def virtual_size(data):
    """Size with every bare LF counted as CRLF (what IMAP RFC822.SIZE and POP3 report)."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def mutf7(name):
    """IMAP modified UTF-7 (RFC 3501 5.1.3): how Dovecot names folder directories on disk."""
    out, buf = [], []

    def flush():
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()
    for c in name:
        if 0x20 <= ord(c) <= 0x7e:
            flush()
            out.append("&-" if c == "&" else c)
        else:
            buf.append(c)
    flush()
    return "".join(out)


def maildir_for(pattern, user, folder):
    local, _, domain = user.partition("@")
    base = pattern.replace("%d", domain).replace("%n", local).replace("%u", user)
    if folder and folder.upper() != "INBOX":
        base = os.path.join(base, "." + ".".join(mutf7(p) for p in folder.split("/") if p))
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True)
    ap.add_argument("--count", type=int, default=10, help="number of normal messages")
    ap.add_argument("--size", type=int, default=4000, help="average message size in bytes (varies ±50%%)")
    ap.add_argument("--folder", default="INBOX", help="INBOX or a folder name ('/' separates levels)")
    ap.add_argument("--tricky", action="store_true", help="also write the malformed/edge-case messages")
    ap.add_argument("--big", type=float, default=0, help="also write one message of this many MB")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from user+folder)")
    ap.add_argument("--maildir", default=None, help="maildir pattern (default: from the stack file)")
    ap.add_argument("--owner", default=None, help="file owner (default: the stack's mail user, 'mail')")
    args = ap.parse_args()

    pattern = args.maildir
    owner = args.owner
    if pattern is None or owner is None:
        try:
            with open(STACK_FILE) as f:
                st = json.load(f)
        except OSError as e:
            if pattern is None:
                sys.exit("seed.py: cannot read the stack file %s (%s); is the stack up? (or pass --maildir)"
                         % (STACK_FILE, e))
            st = {}
        pattern = pattern or st["maildir"]
        owner = owner or st.get("dovecot", {}).get("mail_user", "mail")
    user = args.user.lower()
    if "@" not in user:
        sys.exit("seed.py: --user must be an address like alice@contoso.test")
    try:
        pw = pwd.getpwnam(owner)
        uid, gid = pw.pw_uid, pw.pw_gid
    except KeyError:
        uid = gid = None

    root = maildir_for(pattern, user, None)
    target = maildir_for(pattern, user, args.folder)
    # every level of "A/B/C" is a real folder (.A, .A.B, .A.B.C), as on Exchange
    parts = [p for p in args.folder.split("/") if p] if args.folder.upper() != "INBOX" else []
    folders = [maildir_for(pattern, user, "/".join(parts[:i + 1])) for i in range(len(parts))]
    made = []
    for d in [os.path.dirname(os.path.dirname(root)), os.path.dirname(root)] + [
            x for m in [root] + folders for x in (m, os.path.join(m, "cur"), os.path.join(m, "new"),
                                                  os.path.join(m, "tmp"))]:
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o700, exist_ok=True)
            made.append(d)
    for m in folders:
        mf = os.path.join(m, "maildirfolder")
        if not os.path.exists(mf):
            open(mf, "w").close()
            made.append(mf)
    if folders:  # subscribe every level (Dovecot 2.3 "V\t2" subscriptions file: levels split by TAB)
        subs = os.path.join(root, "subscriptions")
        text = open(subs).read() if os.path.exists(subs) else ""
        v2 = text.startswith("V\t2\n")
        sep = "\t" if v2 or not text else "."
        lines = text.splitlines()
        new = [sep.join(mutf7(p) for p in parts[:i + 1]) for i in range(len(parts))]
        new = [n for n in new if n not in lines]
        if new:
            with open(subs, "a") as f:
                if not text:
                    f.write("V\t2\n\n")
                f.write("".join(n + "\n" for n in new))
            made.append(subs)
    if uid is not None:
        for p in made:
            os.chown(p, uid, gid)

    seed = args.seed if args.seed is not None else zlib.crc32(("%s/%s" % (user, args.folder)).encode())
    gen = Gen(user, seed)
    tmpdir, newdir = os.path.join(target, "tmp"), os.path.join(target, "new")
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    pid = os.getpid()
    now = time.time()
    secs = int(now)
    written = total = 0

    def put(data, date, tag=""):
        nonlocal written, total
        name = "%d.M%dP%dQ%d%s.%s,S=%d,W=%d" % (secs, written, pid, written, tag, host,
                                                  len(data), virtual_size(data))
        tp = os.path.join(tmpdir, name)
        fd = os.open(tp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if uid is not None:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        os.utime(tp, (date, date))
        os.rename(tp, os.path.join(newdir, name))
        written += 1
        total += len(data)

    base = 0
    for i in range(args.count):
        size = max(400, int(args.size * gen.rnd.uniform(0.5, 1.5)))
        data, date = gen.message(base + i, size)
        put(data, date)
    if args.tricky:
        for name, data, date in gen.tricky(args.count):
            put(data, date)
    if args.big:
        data, date = gen.big(args.count + 100, args.big)
        put(data, date)
    print("seed.py: wrote %d messages, %d bytes, to %s" % (written, total, newdir))


if __name__ == "__main__":
    main()
