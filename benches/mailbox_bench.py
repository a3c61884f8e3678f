#!/usr/bin/env python3
"""Mailbox throughput: the library against Python's imaplib / poplib and the raw bounds.

Hand-run, not CI. Needs a running stack (tests/stack/up.sh; MAILOAUTH_STACK_FILE picks it):

    benches/mailbox_bench.py [--count 5000] [--size 20000] [--runs 3] [--skip-build]

What it does, all against the same seeded user (5,000 messages of about 20 KB by default):
  * IMAP through the library: the release build of the `throughput` test of tests/mailbox_imap.rs
    (MAILOAUTH_BENCH_USER points it at the seeded user): the session in windows of 100 and 500
    messages, and with read-ahead (one fetch per message), plus the raw bound (one
    `UID FETCH 1:* (UID BODY.PEEK[])` read to the end with the literal-aware reader, in Rust).
    The C exports (mailoauth_mailbox_*) are not used yet: the run says whether they exist in
    target/release/libmailoauth.so.
  * POP3 through the library: the release build of the `throughput` test of
    tests/mailbox_pop3.rs. That test seeds its own 2,000 messages of the same size; its
    messages/s and MB/s are compared, not its totals.
  * imaplib with XOAUTH2: one UID FETCH per message, and batched by 100.
  * poplib with XOAUTH2 (two-step AUTH): one RETR at a time.
  * The POP3 raw bound: every RETR pipelined (windows of 1,000) on a plain ssl socket,
    responses only counted.
Prints messages/s, MB/s and each figure as a share of its protocol's raw bound.
"""
import argparse
import base64
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import time
import imaplib
import poplib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_FILE = os.environ.get("MAILOAUTH_STACK_FILE", "/tmp/mailoauth-stack.json")


def stack():
    with open(STACK_FILE) as f:
        return json.load(f)


def mint(st, user):
    body = json.dumps({"app_mailbox": user, "roles": ["IMAP.AccessAsApp", "POP.AccessAsApp"]}).encode()
    req = urllib.request.Request(st["idp"]["http"] + "/admin/mint", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["access_token"]


def tls_context(st):
    ctx = ssl.create_default_context(cafile=st["ca_file"])
    return ctx


def xoauth2(user, token):
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


# ---------------------------------------------------------------- IMAP (imaplib)

def imaplib_session(st, user, token):
    m = imaplib.IMAP4_SSL(st["imap"]["host"], st["imap"]["tls"], ssl_context=tls_context(st))
    m.authenticate("XOAUTH2", lambda _challenge: xoauth2(user, token).encode())
    m.select("INBOX", readonly=True)
    return m


def imaplib_uids(m):
    typ, data = m.uid("SEARCH", None, "ALL")
    return [int(u) for u in data[0].split()]


def body_bytes(data):
    total, n = 0, 0
    for item in data:
        if isinstance(item, tuple):
            total += len(item[1])
            n += 1
    return n, total


def imaplib_one_per_message(st, user, token):
    m = imaplib_session(st, user, token)
    uids = imaplib_uids(m)
    t = time.perf_counter()
    n = total = 0
    for u in uids:
        typ, data = m.uid("FETCH", str(u), "(BODY.PEEK[])")
        k, b = body_bytes(data)
        n += k
        total += b
    secs = time.perf_counter() - t
    m.logout()
    return n, total, secs


def imaplib_batched(st, user, token, batch=100):
    m = imaplib_session(st, user, token)
    uids = imaplib_uids(m)
    t = time.perf_counter()
    n = total = 0
    for i in range(0, len(uids), batch):
        chunk = uids[i:i + batch]
        typ, data = m.uid("FETCH", "%d:%d" % (chunk[0], chunk[-1]), "(BODY.PEEK[])")
        k, b = body_bytes(data)
        n += k
        total += b
    secs = time.perf_counter() - t
    m.logout()
    return n, total, secs


# ---------------------------------------------------------------- POP3 (poplib and raw)

def poplib_session(st, user, token):
    p = poplib.POP3_SSL(st["pop3"]["host"], st["pop3"]["tls"], context=tls_context(st))
    p._shortcmd("AUTH XOAUTH2")  # "+ " continuation
    p._shortcmd(base64.b64encode(xoauth2(user, token).encode()).decode())
    return p


def poplib_sequential(st, user, token):
    p = poplib_session(st, user, token)
    count, _ = p.stat()
    t = time.perf_counter()
    total = 0
    for i in range(1, count + 1):
        _, lines, octets = p.retr(i)
        total += sum(len(l) + 2 for l in lines)  # poplib strips CRLF and unstuffs dots
    secs = time.perf_counter() - t
    p.quit()
    return count, total, secs


class RawPop:
    """A minimal POP3 reader: one buffer, a read position (no copying of what is left)."""

    def __init__(self, st, user, token):
        raw = socket.create_connection((st["pop3"]["host"], st["pop3"]["tls"]), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = tls_context(st).wrap_socket(raw, server_hostname=st["pop3"]["host"])
        self.buf = bytearray()
        self.pos = 0
        self.line()
        self.cmd(b"AUTH XOAUTH2")
        self.cmd(base64.b64encode(xoauth2(user, token).encode()))

    def fill(self):
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("POP3 server closed the connection")
        self.buf += d

    def line(self):
        start = self.pos
        while True:
            i = self.buf.find(b"\r\n", start)
            if i >= 0:
                out = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return out
            start = max(self.pos, len(self.buf) - 1)
            before = self.pos
            self.fill()
            start -= before - self.pos

    def cmd(self, c):
        self.s.sendall(c + b"\r\n")
        l = self.line()
        if l.startswith(b"-ERR"):
            raise RuntimeError(l.decode(errors="replace"))
        return l

    def multiline(self):
        """One +OK multi-line response; returns the data length (still dot-stuffed)."""
        first = self.line()
        if not first.startswith(b"+OK"):
            raise RuntimeError(first.decode(errors="replace"))
        begin = self.pos
        if self.buf.startswith(b".\r\n", begin):
            self.pos += 3
            return 0
        start = begin
        while True:
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                self.pos = i + 5
                return i + 2 - begin
            start = max(begin, len(self.buf) - 4)
            before = self.pos
            self.fill()
            shift = before - self.pos
            begin -= shift
            start -= shift

    def pipelined(self, count, window=1000):
        total = 0
        sent = 0
        done = 0
        while done < count:
            while sent < count and sent - done < window:
                batch = min(window - (sent - done), count - sent)
                self.s.sendall(b"".join(b"RETR %d\r\n" % (sent + k + 1) for k in range(batch)))
                sent += batch
            total += self.multiline()
            done += 1
        return total


def pop3_raw(st, user, token):
    r = RawPop(st, user, token)
    count = int(r.cmd(b"STAT").split()[1])
    t = time.perf_counter()
    total = r.pipelined(count)
    secs = time.perf_counter() - t
    r.cmd(b"QUIT")
    return count, total, secs


# ---------------------------------------------------------------- the library (Rust release tests)

def cargo_test(test, env, skip_build):
    cmd = ["cargo", "test", "--release", "--test", test, "throughput", "--", "--ignored",
           "--nocapture", "--test-threads=1"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit("%s failed" % " ".join(cmd))
    return out.stdout


def library_imap(user, runs, skip_build):
    env = dict(os.environ, MAILOAUTH_BENCH_USER=user, MAILOAUTH_BENCH_RUNS=str(runs))
    out = cargo_test("mailbox_imap", env, skip_build)
    res = {}
    for m in re.finditer(r"BENCH (\S+|imap-lib\[[^\]]*\]) (\d+) (\d+) ([\d.]+)$", out, re.M):
        res[m.group(1)] = (int(m.group(2)), int(m.group(3)), float(m.group(4)))
    return res


def library_pop3(skip_build):
    out = cargo_test("mailbox_pop3", dict(os.environ), skip_build)
    res = {}
    for m in re.finditer(r"POP3 window\s+(\d+): (\d+) messages, (\d+) B in ([\d.]+) s", out, re.M):
        res["pop3-lib[window %s]" % m.group(1)] = (int(m.group(2)), int(m.group(3)), float(m.group(4)))
    return res


def c_exports_present():
    so = os.path.join(ROOT, "target", "release", "libmailoauth.so")
    if not os.path.exists(so):
        return False
    try:
        out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "mailoauth_mailbox_open" in out


def capi_runs(st, proto, runs, account):
    """poll + fetch of every message through the C ABI (ctypes): a fresh context, cache and
    consent per run (start: all), one poll of up to 10,000 messages, then one fetch per message
    (the handle reads ahead). Returns [(messages, bytes, fetch seconds, poll seconds)]."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "host"))
    import mailoauth_ctypes as mo
    from stackutil import Idp, auto_consent, make_config
    lib = mo.Library.load(os.path.join(ROOT, "target", "release", "libmailoauth.so"))
    idp = Idp(st["idp"]["http"])
    out = []
    try:
        _capi_loop(lib, mo, idp, auto_consent, make_config, st, proto, runs, account, out)
    finally:
        idp.reset()  # auto_consent off again for the tests that share this stack
    return out


def _capi_loop(lib, mo, idp, auto_consent, make_config, st, proto, runs, account, out):
    import tempfile
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            ctx = lib.context(make_config(st, cache))
            try:
                auto_consent(ctx, idp, account=account, protocols=(proto,))
                with ctx.mailbox_open({"account": account, "protocol": proto, "start": "all",
                                       "lock_timeout_ms": 5000}) as mb:
                    t = time.perf_counter()
                    got = mb.poll(10000)
                    t_poll = time.perf_counter() - t
                    t = time.perf_counter()
                    total = 0
                    for e in got:
                        total += len(mb.fetch(e["id"]))
                    out.append((len(got), total, time.perf_counter() - t, t_poll))
            finally:
                ctx.free()


def median_run(fn, runs, *args):
    results = [fn(*args) for _ in range(runs)]
    secs = statistics.median(r[2] for r in results)
    return results[0][0], results[0][1], secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (the median is shown)")
    ap.add_argument("--user", default=None, help="an already seeded user (skips seeding)")
    ap.add_argument("--skip-pop3-library", action="store_true")
    ap.add_argument("--capi-account", default="bob@contoso.test",
                    help="the known user whose INBOX the C ABI runs use (seeded like --user)")
    ap.add_argument("--skip-build", action="store_true", help="(kept for symmetry; cargo builds as needed)")
    a = ap.parse_args()

    st = stack()
    user = a.user or "bench-%d-%d@contoso.test" % (os.getpid(), int(time.time()))
    if not a.user:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.join(ROOT, "tests/stack/seed.py"), "--user", user,
                              "--count", str(a.count), "--size", str(a.size)],
                             capture_output=True, text=True, check=True).stdout.strip()
        print("seeded %s: %s (%.1f s)" % (user, out, time.perf_counter() - t))
    capi = c_exports_present()
    if capi and not a.user:
        # The C ABI needs a consented (known) user: seed the same amount into its INBOX once.
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/stack/seed.py"), "--user",
                        a.capi_account, "--count", str(a.count), "--size", str(a.size)],
                       capture_output=True, text=True, check=True)
    print("C exports in target/release/libmailoauth.so: %s" % ("present: poll and fetch through ctypes"
          " on %s" % a.capi_account if capi else "absent: the Rust release tests only"))
    print("machine: %d cores; client, Dovecot and the IdP share them; load average %.2f at the start\n"
          % (os.cpu_count(), os.getloadavg()[0]))

    rows = []
    capi_rows = []
    lib = library_imap(user, a.runs, a.skip_build)
    raw_imap = lib.get("imap-raw")
    rows.append(("IMAP raw bound (one UID FETCH 1:*, Rust)", raw_imap, raw_imap))
    for k, v in lib.items():
        if k.startswith("imap-lib"):
            rows.append(("IMAP library, " + k[len("imap-lib["):-1], v, raw_imap))
    if capi:
        for proto in ("imap", "pop3"):
            rs = capi_runs(st, proto, a.runs, a.capi_account)
            n, b = rs[0][0], rs[0][1]
            fetch_s = statistics.median(r[2] for r in rs)
            poll_s = statistics.median(r[3] for r in rs)
            capi_rows.append(("%s C ABI, poll (%d summaries)" % (proto.upper(), n), (n, 0, poll_s)))
            capi_rows.append(("%s C ABI, fetch one by one (read-ahead)" % proto.upper(), (n, b, fetch_s)))
    for name, v in capi_rows:
        if name.startswith("IMAP") and v[1]:
            rows.append((name, v, raw_imap))
    # Minted after the C ABI runs: they reset the identity imitation, which forgets older tokens.
    token = mint(st, user)
    rows.append(("IMAP imaplib, one UID FETCH per message",
                 median_run(imaplib_one_per_message, a.runs, st, user, token), raw_imap))
    rows.append(("IMAP imaplib, UID FETCH batched by 100",
                 median_run(imaplib_batched, a.runs, st, user, token), raw_imap))

    raw_pop = median_run(pop3_raw, a.runs, st, user, token)
    rows.append(("POP3 raw bound (all RETR pipelined, Python)", raw_pop, raw_pop))
    if not a.skip_pop3_library:
        for k, v in library_pop3(a.skip_build).items():
            rows.append(("POP3 library, %s (its own 2,000 msgs)" % k[len("pop3-lib["):-1], v, raw_pop))
    for name, v in capi_rows:
        if name.startswith("POP3") and v[1]:
            rows.append((name, v, raw_pop))
    rows.append(("POP3 poplib, one RETR at a time",
                 median_run(poplib_sequential, a.runs, st, user, token), raw_pop))

    print("%-52s %6s %9s %8s %8s %7s %9s" % ("client", "msgs", "MB", "s", "msg/s", "MB/s", "of raw"))
    for name, (n, b, s), raw in rows:
        ratio = ""
        if raw:
            ratio = "%.0f %%" % (100.0 * (b / s) / (raw[1] / raw[2]))
        print("%-52s %6d %9.1f %8.3f %8.0f %7.1f %9s" % (name, n, b / 1e6, s, n / s, b / s / 1e6, ratio))
    for name, (n, _, secs) in capi_rows:
        if "poll" in name:
            print("%s: %.3f s" % (name, secs))
    print("\nload average %.2f at the end" % os.getloadavg()[0])
    print("ratios compare MB/s (the POP3 library test uses its own 2,000-message user);"
          " medians of %d runs" % a.runs)


if __name__ == "__main__":
    main()
