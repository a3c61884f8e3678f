#!/usr/bin/env bash
# The project's test command: starts the local stack (identity imitation,
# Dovecot, Postfix), runs every suite against it, stops the stack.
# Each suite runs even when an earlier one failed; the exit code is non-zero
# when any failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

passed=0
failed=0
failed_names=()
suite() {
  local name="$1"
  shift
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: passed in $((SECONDS - start)) s"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "=== $name: FAILED after $((SECONDS - start)) s"
  fi
}

tests/install-deps.sh || { echo "tests/install-deps.sh could not install what the suites need"; exit 1; }
cargo build --workspace --quiet || exit 1
tests/stack/up.sh || { echo "the local stack did not start"; exit 1; }
# From here on a test that finds no stack fails instead of skipping.
export MAILOAUTH_REQUIRE_STACK=1
trap 'tests/stack/down.sh' EXIT

# The shared-mailbox send needs the stack's grant mode (Dovecot passes the
# SASL user to the identity imitation): a second, small stack on other ports.
grant_mode_suite() {
  (
    export MAILOAUTH_STACK_FILE=/tmp/mailoauth-stack-grant.json MAILOAUTH_STACK_AUTH_MODE=grant
    export MAILOAUTH_MAIL_HOST=127.0.0.3 MAILOAUTH_IDP_HTTP_PORT=12080 MAILOAUTH_IDP_HTTPS_PORT=12443
    export MAILOAUTH_IMAP_PORT=12143 MAILOAUTH_IMAPS_PORT=12993 MAILOAUTH_POP3_PORT=12110 MAILOAUTH_POP3S_PORT=12995
    export MAILOAUTH_SMTP_PORT=12587 MAILOAUTH_SMTPS_PORT=12465
    export MAILOAUTH_OB_IMAP_PORT=13143 MAILOAUTH_OB_IMAPS_PORT=13993 MAILOAUTH_OB_POP3_PORT=13110
    export MAILOAUTH_OB_POP3S_PORT=13995 MAILOAUTH_OB_SMTP_PORT=13587 MAILOAUTH_OB_SMTPS_PORT=13465
    tests/stack/up.sh >/dev/null || exit 1
    cargo test --quiet --test smtp_shared
    rc=$?
    tests/stack/down.sh >/dev/null
    exit $rc
  )
}

suite "rust" cargo test --workspace --quiet
suite "shared-mailbox (grant mode)" grant_mode_suite
suite "c-abi" tests/c/run.sh
suite "stack" python3 -m pytest tests/stack -q
suite "host" python3 -m pytest tests/host -q
suite "python binding" python3 -m pytest bindings/python/tests -q
suite "c++ binding" bindings/cpp/run-tests.sh
suite ".net binding" bindings/dotnet/run-tests.sh
# Last: it rebuilds the library with the `fuzzing` feature (a cdylib's file name carries no
# feature hash, so the suites above must have run against the plain build first).
suite "fuzz corpus" cargo test --quiet --features fuzzing --test fuzz_corpus

echo
if ((failed)); then
  echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed"
((failed == 0))
