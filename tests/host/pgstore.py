"""A host store backed by PostgreSQL (psycopg 3), the way a CRM would keep
mailoauth's blobs in its own database: one row per key, and a session-level
advisory lock per key so that one refresh runs at a time across machines.

One connection per process (autocommit), shared by the process's threads;
a Python lock serialises the statements on it. The library's own per-key
in-process lock means two threads of one process never hold the same key,
so the session-level (re-entrant) advisory locks are enough.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter

import psycopg

TABLE = "mailoauth_blobs"
DEFAULT_LOCK_TIMEOUT_MS = 30_000
POLL_S = 0.005


def create_table(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, data bytea NOT NULL)")


def read_all(conninfo: str) -> dict:
    with psycopg.connect(conninfo, autocommit=True) as c:
        return {k: bytes(v) for k, v in c.execute(f"SELECT key, data FROM {TABLE}").fetchall()}


class PgStore:
    def __init__(self, lib, conninfo: str):
        self.lib = lib
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.mutex = threading.Lock()
        self.counts = Counter()

    def close(self) -> None:
        with self.mutex:
            self.conn.close()

    def stats(self) -> dict:
        return dict(self.counts)

    def _one(self, sql, args):
        with self.mutex:
            return self.conn.execute(sql, args).fetchone()

    # -- the callbacks (run on a thread that is inside a library call) ----

    def load(self, key: str, sink: int) -> int:
        self.counts["load"] += 1
        row = self._one(f"SELECT data FROM {TABLE} WHERE key = %s", (key,))
        if row is None:
            return 0  # nothing stored: leave the sink empty
        data = bytes(row[0])
        buf = ctypes.create_string_buffer(data, len(data))
        # only mailoauth_blob_set may be called from inside a callback
        return self.lib.raw.mailoauth_blob_set(sink, buf, len(data))

    def save(self, key: str, data: bytes) -> int:
        if not data:
            self.counts["delete"] += 1
            with self.mutex:
                self.conn.execute(f"DELETE FROM {TABLE} WHERE key = %s", (key,))
            return 0
        self.counts["save"] += 1
        with self.mutex:
            self.conn.execute(
                f"INSERT INTO {TABLE} (key, data) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data",
                (key, data),
            )
        return 0

    def lock(self, key: str, do_lock: bool, timeout_ms: int) -> int:
        if not do_lock:
            (released,) = self._one("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            return 0 if released else 2
        if timeout_ms < 0:
            timeout_ms = DEFAULT_LOCK_TIMEOUT_MS
        end = time.monotonic() + timeout_ms / 1000.0
        first = True
        while True:
            (got,) = self._one("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            if got:
                self.counts["lock"] += 1
                return 0
            if first:
                self.counts["lock_contended"] += 1
                first = False
            if time.monotonic() >= end:
                self.counts["lock_timeout"] += 1
                return 1
            time.sleep(POLL_S)

    def attach(self, ctx) -> None:
        ctx.set_store(self.load, self.save, self.lock)
