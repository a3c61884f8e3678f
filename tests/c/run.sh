#!/usr/bin/env bash
# tests/c/run.sh: build libmailoauth (debug) and run the C boundary tests
# (test_foundation.c; test_tokens.c and test_smtp.c, which need the local stack of
# tests/stack/up.sh running)
#   1. with AddressSanitizer + UBSan on the C side (the Rust library stays
#      uninstrumented; its malloc/free go through ASan's interceptors), and
#   2. an uninstrumented build under valgrind (definite leaks are errors;
#      valgrind's own findings exit 99, failed checks exit 1).
# Works from any directory. Exit status is non-zero if anything fails.
# Environment: CARGO (default cargo), CC (default gcc), MAILOAUTH_TEST_LOOPS,
# SKIP_VALGRIND=1 to skip the valgrind run (it is slow).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CC="${CC:-gcc}"
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIBDIR="$TARGET_DIR/debug"
BUILD="$HERE/build"
mkdir -p "$BUILD"

echo "== cargo build (debug)"
# --workspace: the same feature unification as tests/run.sh's build, so nothing is rebuilt.
(cd "$ROOT" && "$CARGO" build --workspace)
[[ -f "$LIBDIR/libmailoauth.so" ]] || { echo "run.sh: $LIBDIR/libmailoauth.so missing" >&2; exit 1; }
[[ -f "$ROOT/include/mailoauth.h" ]] || { echo "run.sh: include/mailoauth.h missing (cbindgen)" >&2; exit 1; }

# A throw-away CA certificate for the tls.ca_file test.
CA_PEM="$BUILD/test-ca.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=mailoauth C test CA" -keyout "$BUILD/test-ca.key" -out "$CA_PEM" 2>/dev/null
export MAILOAUTH_TEST_CA_PEM="$CA_PEM"

CFLAGS=(-std=c11 -Wall -Wextra -Werror -g -I"$ROOT/include" -I"$HERE")
LDFLAGS=(-L"$LIBDIR" -lmailoauth -Wl,-rpath,"$LIBDIR" -lpthread)
PROGRAMS=(test_foundation test_tokens test_smtp test_mailbox test_account)

for prog in "${PROGRAMS[@]}"; do
    echo "== compile $prog (ASan + UBSan)"
    "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer \
        -o "$BUILD/${prog}_asan" "$HERE/$prog.c" "${LDFLAGS[@]}"
    # as rustls-ffi does: make sure ASan really got linked in
    # (grep the whole listing: "nm | grep -q" would die of SIGPIPE under pipefail)
    if ! nm "$BUILD/${prog}_asan" | grep -c __asan_init >/dev/null; then
        echo "run.sh: __asan_init not found in the ASan build of $prog" >&2
        exit 1
    fi

    echo "== compile $prog (plain)"
    "$CC" "${CFLAGS[@]}" -o "$BUILD/$prog" "$HERE/$prog.c" "${LDFLAGS[@]}"
done

status=0
summary=()

# Runs "$@", prints its output, and checks the last line is "N passed, 0 failed".
run_one() {
    local label="$1"; shift
    local log="$BUILD/$label.log" rc=0
    echo "== run ($label)"
    "$@" >"$log" 2>&1 || rc=$?
    cat "$log"
    local line note=""
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
    [[ $rc -eq 99 ]] && note="; valgrind reported memory errors or definite leaks"
    if [[ $rc -ne 0 || -z "$line" || "$line" != *" 0 failed" ]]; then
        status=1
        summary+=("$label: FAILED (exit $rc; ${line:-no summary line}$note)")
    else
        summary+=("$label: ok ($line)")
    fi
}

# LSan: suppressions only for the Rust runtime's own process-wide state.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$HERE/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for prog in "${PROGRAMS[@]}"; do
    run_one "asan-$prog" "$BUILD/${prog}_asan"
done
unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

if [[ "${SKIP_VALGRIND:-0}" != 1 ]]; then
    for prog in "${PROGRAMS[@]}"; do
        # valgrind.supp: ring's assembly AES-GCM (TLS records), see the file;
        # 40 callers so that its frame patterns can see rustls under tokio.
        run_one "valgrind-$prog" valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --track-origins=yes --num-callers=40 --suppressions="$HERE/valgrind.supp" \
            --quiet "$BUILD/$prog"
    done
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
