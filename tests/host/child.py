"""A second process for the host tests: a fresh interpreter that loads the
library through ctypes, like another instance of the host application (or
another machine, with a host store). Prints JSON lines on stdout; never a
token (only a short digest to compare).

  child.py tokens  CONFIG ACCOUNT [--flags=N] PROTO...
                   token_get for each protocol, then account_list
  child.py loop    CONFIG ACCOUNT PROTO THREADS SECONDS [--pg DSN] [--key HEX]
                   prints {"ready":…}, waits for a line on stdin, then THREADS
                   threads call token_get in a loop for SECONDS; prints counts
  child.py refresh CONFIG ACCOUNT
                   token_get, then a forced refresh (the grant works), prints
                   {"ready": true}, then forced refreshes until killed
  child.py forkserver CONFIG ACCOUNT
                   loads the library (no context: no threads yet) and reads
                   commands on stdin: "spawn" forks a fresh process running
                   `refresh` (prints {"pid": N} first), "reap N" waits for it
                   (prints {"reaped": N, "signal": S}). Much cheaper than
                   starting an interpreter for each of hundreds of kills.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mailoauth_ctypes as mo  # noqa: E402


def out(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def err_dict(e: mo.MailOAuthError) -> dict:
    return {"code": e.code, "name": e.name, "error": e.error}


def open_context(lib, config_path, pg=None, key_hex=None):
    with open(config_path) as f:
        config = json.load(f)
    ctx = lib.context(config)
    store = None
    if key_hex:
        ctx.set_cache_key(bytes.fromhex(key_hex))
    if pg:
        import pgstore

        store = pgstore.PgStore(lib, pg)
        store.attach(ctx)
    return ctx, store


def cmd_tokens(lib, config_path, account, *protos):
    flags = 0
    if protos and protos[0].startswith("--flags="):
        flags, protos = int(protos[0].split("=", 1)[1]), protos[1:]
    ctx, _ = open_context(lib, config_path)
    results = {}
    for p in protos:
        try:
            results[p] = {"ok": True, "digest": digest(ctx.token_get(account, p, flags))}
        except mo.MailOAuthError as e:
            results[p] = {"ok": False, **err_dict(e)}
    try:
        accounts = ctx.account_list()
    except mo.MailOAuthError as e:
        accounts = err_dict(e)
    ctx.free()
    out({"results": results, "accounts": accounts})


def cmd_loop(lib, config_path, account, proto, threads, seconds, *opts):
    opts = list(opts)
    pg = key_hex = None
    if "--pg" in opts:
        pg = opts[opts.index("--pg") + 1]
    if "--key" in opts:
        key_hex = opts[opts.index("--key") + 1]
    ctx, store = open_context(lib, config_path, pg, key_hex)
    first = ctx.token_get(account, proto, 0)
    out({"ready": True, "pid": os.getpid(), "digest": digest(first)})
    sys.stdin.readline()  # the parent's "go": both processes start together

    threads, seconds = int(threads), float(seconds)
    lock = threading.Lock()
    calls = [0]
    failures = []
    digests = set()
    stop_at = time.monotonic() + seconds

    def worker():
        n = 0
        seen = set()
        fails = []
        while time.monotonic() < stop_at:
            try:
                seen.add(digest(ctx.token_get(account, proto, 0)))
            except mo.MailOAuthError as e:
                fails.append(err_dict(e))
            n += 1
        with lock:
            calls[0] += n
            failures.extend(fails)
            digests.update(seen)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ctx.free()
    result = {
        "calls": calls[0],
        "failures": len(failures),
        "first_failures": failures[:5],
        "distinct_tokens": len(digests),
    }
    if store is not None:
        result["store"] = store.stats()
        store.close()
    out(result)


def cmd_refresh(lib, config_path, account):
    ctx, _ = open_context(lib, config_path)
    for flags in (0, mo.TOKEN_FORCE_REFRESH):
        try:
            ctx.token_get(account, "imap", flags)
        except mo.MailOAuthError as e:
            out({"ready": False, "flags": flags, **err_dict(e)})
            os._exit(3)
    out({"ready": True})
    while True:
        ctx.token_get(account, "imap", mo.TOKEN_FORCE_REFRESH)


def cmd_forkserver(lib, config_path, account):
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "spawn":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    cmd_refresh(lib, config_path, account)
                finally:
                    os._exit(4)
            out({"pid": pid})
        elif cmd[0] == "reap":
            _, status = os.waitpid(int(cmd[1]), 0)
            out({"reaped": int(cmd[1]), "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                 "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None})
        elif cmd[0] == "quit":
            break


def main(argv):
    lib = mo.Library.load()
    cmd, args = argv[1], argv[2:]
    {"tokens": cmd_tokens, "loop": cmd_loop, "refresh": cmd_refresh, "forkserver": cmd_forkserver}[cmd](lib, *args)


if __name__ == "__main__":
    main(sys.argv)
