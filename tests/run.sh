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
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
}

cargo build --workspace --quiet || exit 1
tests/stack/up.sh || { echo "the local stack did not start"; exit 1; }
# From here on a test that finds no stack fails instead of skipping.
export MAILOAUTH_REQUIRE_STACK=1
trap 'tests/stack/down.sh' EXIT

suite "rust" cargo test --workspace --quiet
suite "c-abi" tests/c/run.sh
suite "stack" python3 -m pytest tests/stack -q
suite "host" python3 -m pytest tests/host -q

echo
if ((failed)); then
  echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed"
((failed == 0))
