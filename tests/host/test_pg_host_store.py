"""Two machines, one grant, in the host's own database: the cache goes
through host-store callbacks (ctypes CFUNCTYPE) into a real PostgreSQL,
with advisory locks as the store's lock, cache protection `key` with the
same 32-byte key on both "machines" (processes with their own connection).
Strict rotation and short-lived access tokens: any refresh that is not
serialised across the two would use a dead refresh token and fail.

A throw-away cluster is started in a temporary folder as the `postgres`
user (socket only, no TCP) and stopped at the end."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, auto_consent, make_config, run_loop_children

PROCESSES = 2
THREADS = 4
SECONDS = 20
LIFETIME_S = 10
KEY = bytes(range(0x40, 0x60))  # the same 32 bytes on every machine

pytestmark = pytest.mark.usefixtures("need_consent")


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return dirs[-1] if dirs else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    psycopg = pytest.importorskip("psycopg")
    bindir = pg_bindir()
    if bindir is None or not os.path.exists(os.path.join(bindir, "initdb")):
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    base = tempfile.mkdtemp(prefix="mailoauth-pg-")
    data, sock, logfile = os.path.join(base, "data"), os.path.join(base, "sock"), os.path.join(base, "pg.log")
    os.mkdir(sock)
    for p in (base, sock):
        os.chown(p, pg.pw_uid, pg.pw_gid)
    os.chmod(base, 0o700)

    def as_postgres(*cmd, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, check=check)

    started = False
    try:
        as_postgres(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        port = free_port()
        opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off"
        r = as_postgres(f"{bindir}/pg_ctl", "-D", data, "-l", logfile, "-w", "-t", "30", "-o", opts, "start", check=False)
        if r.returncode != 0:
            log = open(logfile).read() if os.path.exists(logfile) else ""
            pytest.fail(f"pg_ctl start failed: {r.stdout}{r.stderr}{log}")
        started = True
        conninfo = f"host={sock} port={port} user=postgres dbname=postgres"
        import pgstore

        pgstore.create_table(conninfo)
        with psycopg.connect(conninfo) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        yield conninfo
    finally:
        if started:
            as_postgres(f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg(postgres):
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute("DELETE FROM mailoauth_blobs")
    return postgres


@pytest.fixture
def store_config(stack, tmp_path):
    cfg = make_config(stack, tmp_path / "unused")
    cfg["cache"] = {"protection": "key"}
    p = tmp_path / "config-pg.json"
    import json

    p.write_text(json.dumps(cfg))
    return cfg, p


def host_context(lib, cfg, conninfo, key=KEY):
    import pgstore

    ctx = lib.context(cfg)
    ctx.set_cache_key(key)
    store = pgstore.PgStore(lib, conninfo)
    store.attach(ctx)
    return ctx, store


def test_two_machines_share_a_grant_through_postgres(lib, idp, pg, store_config):
    import pgstore

    cfg, cfg_file = store_config
    idp.settings(access_token_lifetime_s=LIFETIME_S, rotation="strict")
    ctx, store = host_context(lib, cfg, pg)
    try:
        auto_consent(ctx, idp, ALICE)
        assert ctx.token_get(ALICE, "imap")
    finally:
        ctx.free()
        store.close()
    rows = pgstore.read_all(pg)
    assert f"grant:{ALICE}" in rows, sorted(rows)
    before = idp.counters()["token"]

    results = run_loop_children(
        PROCESSES, [cfg_file, ALICE, "imap", THREADS, SECONDS, "--pg", pg, "--key", KEY.hex()], SECONDS
    )

    after = idp.counters()["token"]
    calls = sum(r["calls"] for r in results)
    failures = sum(r["failures"] for r in results)
    refreshes = after["refresh_token"] - before["refresh_token"]
    contended = sum(r["store"].get("lock_contended", 0) for r in results)
    bound = 2 * (SECONDS / (LIFETIME_S / 2)) + 2
    print(
        f"\npostgres host store: {calls} calls by {PROCESSES}x{THREADS} threads in ~{SECONDS} s, "
        f"{refreshes} refresh grants (bound {bound:.0f}), {after['errors'] - before['errors']} token errors, "
        f"{failures} failures; store stats {[r['store'] for r in results]}, contended locks {contended}"
    )
    assert failures == 0, [r["first_failures"] for r in results]
    assert after["errors"] == before["errors"], "a dead refresh token was used: refreshes were not serialised"
    assert refreshes >= 2
    assert refreshes <= bound
    assert calls >= 100 * refreshes

    # what is in the table is protected: no token the IdP issued appears in it
    rows = pgstore.read_all(pg)
    secrets = [s.encode() for s in idp.secrets() if len(s) >= 8]
    for key, blob in rows.items():
        assert b"refresh_token" not in blob, key
        for s in secrets:
            assert s not in blob, f"{key} holds a secret in plaintext"

    # a third machine with the key reads it; one with another key cannot
    ctx, store = host_context(lib, cfg, pg)
    try:
        assert ctx.token_get(ALICE, "imap")
        assert [a["account"] for a in ctx.account_list()] == [ALICE]
    finally:
        ctx.free()
        store.close()
    # the third machine may have refreshed (short token lifetime): compare against the row as it is now
    rows = pgstore.read_all(pg)
    ctx, store = host_context(lib, cfg, pg, key=bytes(32))
    try:
        with pytest.raises(mo.MailOAuthError) as e:
            ctx.token_get(ALICE, "imap")
        assert e.value.code == mo.CACHE_CORRUPT, e.value
    finally:
        ctx.free()
        store.close()
    assert pgstore.read_all(pg)[f"grant:{ALICE}"] == rows[f"grant:{ALICE}"], "an unreadable grant was overwritten"


def test_lock_timeout_is_busy(lib, idp, pg, store_config):
    """Another machine holds the account's row lock past the wait allowed:
    BUSY (the lock callback's non-zero answer), nothing overwritten."""
    import psycopg

    cfg, _ = store_config
    ctx, store = host_context(lib, cfg, pg)
    try:
        auto_consent(ctx, idp, ALICE)
        with psycopg.connect(pg, autocommit=True) as other:
            assert other.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"grant:{ALICE}",)).fetchone()[0]
            orig = store.lock

            def short_lock(key, do_lock, timeout_ms):
                return orig(key, do_lock, min(timeout_ms, 300) if do_lock else timeout_ms)

            store.lock = short_lock
            ctx.set_store(store.load, store.save, store.lock)
            with pytest.raises(mo.MailOAuthError) as e:
                ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
            assert e.value.code == mo.BUSY, e.value
        # the other machine let go: works again
        assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    finally:
        ctx.free()
        store.close()
