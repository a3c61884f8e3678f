#!/usr/bin/env python3
"""SMTP send benchmark: libmailoauth through its C ABI against Python's smtplib.

Runs by hand against a running local stack (tests/stack/up.sh), never in CI:

    cargo build --release
    tests/stack/up.sh
    python3 benches/smtp_bench.py                  # 1,000 small + 20 x 5 MB per mode

Every message goes to @discard.test, which the stack's Postfix accepts and
discards, so the client path is measured (TLS, SMTP dialogue, transfer), not
delivery. Modes, all in the same run, all over STARTTLS with XOAUTH2:

  lib-1      mailoauth_smtp_send from one host thread (the context's pool)
  lib-N      the same from N host threads at once (default 4) through the pool,
             which keeps at most smtp.max_connections (default 2) per mailbox
  smtplib-1  smtplib over one connection (token from mailoauth_token_get)
  smtplib-c  smtplib with a new connection (TLS + AUTH) per message

Both sides build each message as they send it (the library from the request
JSON, smtplib from an email.message.EmailMessage), with the same text body and,
for the big messages, the same 5 MB attachment. Prints messages per second per
mode and the ratios to smtplib over one connection.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import re
import smtplib
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "host"))

import mailoauth_ctypes as mo  # noqa: E402

SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
TEXT = ("Guten Tag,\r\n\r\nanbei die Zahlen für März. Grüße aus dem Benchmark.\r\n" * 14)[:1000]


# ---------------------------------------------------------------------------
# stack and sign-in


def load_stack(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        sys.exit(f"no stack file at {path}: start the stack with tests/stack/up.sh")


def config_for(stack: dict, cache_dir: str, max_connections: int) -> dict:
    return {
        "provider": "custom",
        "authority": stack["idp"]["http"],
        "allow_plaintext_loopback": True,
        "tenant": stack["idp"]["tenant"],
        "client_id": stack["idp"]["client_id"],
        "scopes": {"smtp": SMTP_SCOPE},
        "servers": {"smtp": {"host": stack["smtp"]["host"], "port": stack["smtp"]["starttls"],
                             "security": "starttls"}},
        "smtp": {"max_connections": max_connections},
        "tls": {"ca_file": stack["ca_file"]},
        "cache": {"protection": "none", "path": cache_dir},
        "browser": "none",
        "http": {"proxy": "none"},
    }


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) without following redirects or using a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def sign_in(ctx: mo.Context, user: str) -> None:
    """A browser consent, the identity imitation's sign-in form submitted as
    `user` (no global auto-consent: the stack may be shared)."""
    op = ctx.consent_begin({"account": user, "protocols": ["smtp"], "flow": "browser"})
    try:
        url = op.info()["authorize_url"]
        status, _, page = http("GET", url)
        assert status == 200, f"sign-in page: {status} {page[:300]}"
        form = page[page.index('<form id="signin"'):]
        action = re.search(r'action="([^"]+)"', form).group(1).replace("&amp;", "&")
        txn = re.search(r'name="txn"[^>]*value="([^"]+)"', form).group(1)
        base = urllib.parse.urlsplit(url)
        body = urllib.parse.urlencode({"txn": txn, "decision": "accept", "username": user}).encode()
        status, headers, text = http("POST", urllib.parse.urljoin(f"{base.scheme}://{base.netloc}/", action),
                                     body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, f"decide: {status} {text[:300]}"
        status, _, text = http("GET", headers["Location"])
        assert status == 200, f"listener: {status} {text[:300]}"
        assert op.wait(30_000) == mo.OK, "consent did not finish"
        op.result()
    finally:
        op.free()


def lib_sender(lib: mo.Library, ctx: mo.Context):
    """mailoauth_smtp_send as a function of a request dict (the binding's
    wrapper when it has one, else the raw export)."""
    if hasattr(ctx, "smtp_send"):
        return ctx.smtp_send
    fn = lib.raw.mailoauth_smtp_send
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]

    def send(req: dict) -> dict:
        out = ctypes.c_void_p()
        lib.check(fn(ctx.handle, json.dumps(req).encode(), ctypes.byref(out)), "mailoauth_smtp_send")
        return lib.take_json(out)

    return send


# ---------------------------------------------------------------------------
# the senders


def lib_request(user: str, i: int, tag: str, attachment: str | None) -> dict:
    m = {"to": [f"bench-{tag}-{i}@discard.test"], "subject": f"Bench {tag} {i}", "text": TEXT}
    if attachment:
        m["attachments"] = [{"name": "daten.bin", "content_type": "application/octet-stream",
                             "path": attachment}]
    return {"account": user, "message": m}


def py_message(user: str, i: int, tag: str, attachment: bytes | None) -> tuple[str, bytes]:
    to = f"bench-{tag}-{i}@discard.test"
    m = EmailMessage()
    m["From"] = user
    m["To"] = to
    m["Subject"] = f"Bench {tag} {i}"
    m.set_content(TEXT.replace("\r\n", "\n"))
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="daten.bin")
    return to, m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def run_lib(send, user: str, n: int, threads: int, tag: str, attachment: str | None) -> float:
    """Seconds for `n` sends split over `threads` host threads."""
    errors: list = []
    counter = iter(range(n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                send(lib_request(user, i, tag, attachment))
            except Exception as e:  # noqa: BLE001 - reported after the run
                errors.append(e)
                return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return took


def smtp_login(stack: dict, tls: ssl.SSLContext, user: str, token: str) -> smtplib.SMTP:
    s = smtplib.SMTP(stack["smtp"]["host"], stack["smtp"]["starttls"], timeout=60)
    s.ehlo("bench.test")
    s.starttls(context=tls)
    s.ehlo("bench.test")
    raw = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    code, msg = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(raw).decode())
    if code != 235:
        raise RuntimeError(f"smtplib AUTH XOAUTH2: {code} {msg!r}")
    return s


def run_smtplib(stack, tls, user, token_fn, n: int, per_message: bool, tag: str,
                attachment: bytes | None) -> float:
    t0 = time.perf_counter()
    s = None if per_message else smtp_login(stack, tls, user, token_fn())
    for i in range(n):
        to, data = py_message(user, i, tag, attachment)
        if per_message:
            s = smtp_login(stack, tls, user, token_fn())
        s.sendmail(user, [to], data)
        if per_message:
            s.quit()
    if not per_message:
        s.quit()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack-file", default=os.environ.get("MAILOAUTH_STACK_FILE", "/tmp/mailoauth-stack.json"))
    ap.add_argument("--lib", default=str(ROOT / "target" / "release" / "libmailoauth.so"))
    ap.add_argument("--user", default="bob@contoso.test")
    ap.add_argument("--small", type=int, default=1000, help="small messages per mode (1,000)")
    ap.add_argument("--big", type=int, default=20, help="big messages per mode (20)")
    ap.add_argument("--big-mb", type=float, default=5.0, help="attachment size in MB (5)")
    ap.add_argument("--threads", type=int, default=4, help="host threads of the pooled mode (4)")
    ap.add_argument("--max-connections", type=int, default=2, help="smtp.max_connections (2, the default)")
    ap.add_argument("--skip-per-connection", action="store_true", help="leave out smtplib-c")
    args = ap.parse_args()

    stack = load_stack(args.stack_file)
    if not os.path.exists(args.lib):
        sys.exit(f"{args.lib} not found: run cargo build --release")
    lib = mo.Library(args.lib)
    tls = ssl.create_default_context(cafile=stack["ca_file"])
    tag = f"{int(time.time())}-{os.getpid()}"

    with tempfile.TemporaryDirectory() as tmp:
        attachment = os.path.join(tmp, "daten.bin")
        payload = os.urandom(int(args.big_mb * 1_000_000))
        with open(attachment, "wb") as f:
            f.write(payload)
        ctx = lib.context(config_for(stack, os.path.join(tmp, "cache"), args.max_connections))
        try:
            sign_in(ctx, args.user)
            send = lib_sender(lib, ctx)
            token_fn = lambda: ctx.token_get(args.user, "smtp")  # noqa: E731
            # Warm-up: the first token, a pooled connection; smtplib's TLS setup.
            send(lib_request(args.user, 0, tag + "-warm", None))
            smtp_login(stack, tls, args.user, token_fn()).quit()

            modes = [
                ("lib-1", "library, 1 host thread",
                 lambda n, a, k: run_lib(send, args.user, n, 1, f"{tag}-l1{k}", attachment if a else None)),
                (f"lib-{args.threads}",
                 f"library, {args.threads} host threads, pool of {args.max_connections}",
                 lambda n, a, k: run_lib(send, args.user, n, args.threads, f"{tag}-lN{k}",
                                         attachment if a else None)),
                ("smtplib-1", "smtplib, one connection",
                 lambda n, a, k: run_smtplib(stack, tls, args.user, token_fn, n, False, f"{tag}-p1{k}",
                                             payload if a else None)),
            ]
            if not args.skip_per_connection:
                modes.append(("smtplib-c", "smtplib, a connection per message",
                              lambda n, a, k: run_smtplib(stack, tls, args.user, token_fn, n, True,
                                                          f"{tag}-pc{k}", payload if a else None)))
            results: dict = {}
            for kind, n, big in (("small", args.small, False), ("big", args.big, True)):
                if n <= 0:
                    continue
                for key, label, fn in modes:
                    took = fn(n, big, kind[0])
                    results[(kind, key)] = n / took
                    size = f"{args.big_mb:g} MB" if big else "1 KB"
                    print(f"{kind:5} {label:45} {n:5} x {size:6} {took:8.2f} s {n / took:9.1f} msg/s",
                          flush=True)
        finally:
            ctx.free()

    print()
    for kind in ("small", "big"):
        base = results.get((kind, "smtplib-1"))
        if not base:
            continue
        parts = []
        for key in ("lib-1", f"lib-{args.threads}", "smtplib-c"):
            if (kind, key) in results:
                parts.append(f"{key} / smtplib-1 = {results[(kind, key)] / base:.2f}x")
        print(f"{kind:5} ratios: " + ", ".join(parts))


if __name__ == "__main__":
    main()
