"""Helpers for the host-level tests: the stack file, a mailoauth configuration
for the local stack, the IdP's admin API, consent drivers and child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mailoauth_ctypes as mo  # noqa: E402

STACK_FILE = os.environ.get("MAILOAUTH_STACK_FILE", "/tmp/mailoauth-stack.json")
CHILD = str(HERE / "child.py")

SCOPES = {
    "smtp": "https://outlook.office.com/SMTP.Send",
    "imap": "https://outlook.office.com/IMAP.AccessAsUser.All",
    "pop3": "https://outlook.office.com/POP.AccessAsUser.All",
    "app": "https://outlook.office365.com/.default",
}

ALICE = "alice@contoso.test"
BOB = "bob@contoso.test"
SERVICE = "service@contoso.test"


def load_stack():
    """The stack description, or None when the stack is not up."""
    try:
        with open(STACK_FILE) as f:
            stack = json.load(f)
    except (OSError, ValueError):
        return None
    import requests

    try:
        r = requests.get(stack["idp"]["http"] + "/health", timeout=3)
        if r.status_code != 200:
            return None
    except requests.RequestException:
        return None
    return stack


def make_config(stack: dict, cache_dir, **overrides) -> dict:
    """A mailoauth configuration for the local stack."""
    mail = stack["imap"]["host"]
    cfg = {
        "provider": "custom",
        "authority": stack["idp"]["http"],
        "allow_plaintext_loopback": True,
        "tenant": stack["idp"]["tenant"],
        "client_id": stack["idp"]["client_id"],
        "scopes": dict(SCOPES),
        "servers": {
            "imap": {"host": mail, "port": stack["imap"]["tls"], "security": "tls"},
            "pop3": {"host": stack["pop3"]["host"], "port": stack["pop3"]["tls"], "security": "tls"},
            "smtp": {"host": stack["smtp"]["host"], "port": stack["smtp"]["starttls"], "security": "starttls"},
        },
        "tls": {"ca_file": stack["ca_file"]},
        "cache": {"protection": "none", "path": str(cache_dir)},
        "browser": "none",
    }
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


class Idp:
    """The test IdP's admin API (tests/stack/idp/README.md)."""

    def __init__(self, base: str):
        import requests

        self.base = base
        self.http = requests.Session()
        self.http.trust_env = False

    def _post(self, path, body=None):
        r = self.http.post(self.base + path, json=body if body is not None else {}, timeout=10)
        assert r.status_code == 200, f"POST {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def _get(self, path):
        r = self.http.get(self.base + path, timeout=10)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def reset(self):
        return self._post("/admin/reset")

    def settings(self, **kw):
        return self._post("/admin/settings", kw) if kw else self._get("/admin/settings")

    def counters(self) -> dict:
        return self._get("/admin/counters")

    def grants(self, kind: str) -> int:
        return self.counters()["token"][kind]

    def fail(self, **kw):
        return self._post("/admin/fail", kw)

    def secrets(self) -> list:
        return self._get("/admin/secrets")

    def revoke_refresh_tokens(self, **kw):
        return self._post("/admin/revoke_refresh_tokens", kw)

    def device_approve(self, user_code, user=None):
        body = {"user_code": user_code}
        if user:
            body["user"] = user
        return self._post("/admin/device/approve", body)

    def device_deny(self, user_code):
        return self._post("/admin/device/deny", {"user_code": user_code})

    def requests(self, endpoint=None):
        return self._get("/admin/requests" + (f"?endpoint={endpoint}" if endpoint else ""))


# ---- helpers ----------------------------------------------------------------


def skip_or_fail(reason: str) -> None:
    """Skips when run by hand; fails under tests/run.sh (MAILOAUTH_REQUIRE_STACK=1),
    where a missing stack or library must never pass as a skip."""
    if os.environ.get("MAILOAUTH_REQUIRE_STACK") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def need(lib: mo.Library, *names: str) -> None:
    """Skips the test while this build lacks one of the exports."""
    missing = [n for n in names if not lib.has(n)]
    if missing:
        skip_or_fail("libmailoauth does not export %s yet" % ", ".join(missing))


def follow_authorize(url: str):
    """Drives an authorize URL like a browser would with auto-consent on:
    follows the IdP's 302 to our loopback listener and returns the final
    response (the listener's page)."""
    import requests

    s = requests.Session()
    s.trust_env = False
    return s.get(url, timeout=30, allow_redirects=True)


def wait_op(op: mo.Operation, timeout_s: float = 30) -> int:
    """op_wait with a bound (the op's own timeout also applies)."""
    return op.wait(int(timeout_s * 1000))


def auto_consent(ctx: mo.Context, idp: Idp, account=ALICE, protocols=("smtp", "imap", "pop3"), **req):
    """A browser consent with the IdP's auto_consent on: returns op_result."""
    idp.settings(auto_consent=True)
    body = {"account": account, "flow": "browser", "protocols": list(protocols)}
    body.update(req)
    with ctx.consent_begin(body) as op:
        url = op.info()["authorize_url"]
        r = follow_authorize(url)
        assert r.status_code == 200, r.text
        assert wait_op(op) == mo.OK
        return op.result()


def run_child(*args, timeout=60, env=None) -> dict:
    """Runs tests/host/child.py in a fresh interpreter; returns its JSON."""
    p = subprocess.run(
        [sys.executable, CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert p.returncode == 0, f"child {args[0]} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines, f"child printed nothing; stderr: {p.stderr}"
    return json.loads(lines[-1])


def read_json_line(proc, timeout_s: float) -> dict:
    """The next JSON line a child prints on stdout, within `timeout_s` (else
    the test fails). Reads the pipe's file descriptor directly and keeps the
    rest of a chunk for the next call, so two lines arriving together are
    never stuck in a buffer that select() cannot see."""
    import selectors

    buf = proc.__dict__.setdefault("_mo_linebuf", bytearray())
    fd = proc.stdout.fileno()
    end = time.monotonic() + timeout_s
    while b"\n" not in buf:
        left = end - time.monotonic()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            if left <= 0 or not sel.select(left):
                pytest.fail(f"child {proc.pid} printed no line within {timeout_s} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(5)
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"child {proc.pid} exited ({proc.returncode}) without a line; stderr: {err}")
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)


def run_loop_children(n: int, args: list, seconds: float) -> list:
    """Starts `n` `child.py loop …` processes, lets them start together once
    each is ready, and returns their final JSON. Every child is stopped."""
    procs = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    [sys.executable, CHILD, "loop", *map(str, args)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for p in procs:
            ready = read_json_line(p, 30)
            assert ready.get("ready"), ready
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            results.append(read_json_line(p, seconds + 30))
            p.wait(10)
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
