"""Many callers, one grant: 2 processes x 8 threads call
mailoauth_token_get(ctx, account, "imap", 0) in a loop for ~25 s while
access tokens live 20 s and every refresh token is single-use (strict
rotation). One refresh at a time per account across threads and processes,
re-reading the store under the lock, means no caller ever fails and the
token endpoint sees about one refresh per expiry window."""

from __future__ import annotations

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, auto_consent, run_loop_children

PROCESSES = 2
THREADS = 8
SECONDS = 25
LIFETIME_S = 20

pytestmark = pytest.mark.usefixtures("need_consent")


def test_two_processes_eight_threads_strict_rotation(lib, ctx, idp, config_file):
    idp.settings(access_token_lifetime_s=LIFETIME_S, rotation="strict")
    auto_consent(ctx, idp, ALICE)  # its access token lives 20 s too
    before = idp.counters()["token"]

    results = run_loop_children(PROCESSES, [config_file, ALICE, "imap", THREADS, SECONDS], SECONDS)

    after = idp.counters()["token"]
    calls = sum(r["calls"] for r in results)
    failures = sum(r["failures"] for r in results)
    refreshes = after["refresh_token"] - before["refresh_token"]
    token_errors = after["errors"] - before["errors"]
    # A token is handed out while it has min(5 min, half its lifetime) left:
    # a refresh at most every LIFETIME_S/2 seconds per window, plus slack.
    bound = 2 * (SECONDS / (LIFETIME_S / 2)) + 2
    print(
        f"\nconcurrency: {calls} calls by {PROCESSES}x{THREADS} threads in ~{SECONDS} s, "
        f"{refreshes} refresh grants (bound {bound:.0f}), {token_errors} token endpoint errors, "
        f"{failures} failures, distinct tokens per process {[r['distinct_tokens'] for r in results]}"
    )
    assert failures == 0, [r["first_failures"] for r in results]
    assert token_errors == 0, "a refresh token was used twice (strict rotation refused it)"
    assert refreshes >= 2, "25 s of calls with 20 s tokens must have refreshed (at ~10 s and ~20 s)"
    assert refreshes <= bound
    assert calls >= 100 * refreshes, "far more calls than refreshes"
    # the grant is still good afterwards, and in this process too
    assert ctx.token_get(ALICE, "imap", mo.TOKEN_FORCE_REFRESH)
    assert [a["state"] for a in ctx.account_list()] == ["ok"]
