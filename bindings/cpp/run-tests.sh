#!/usr/bin/env bash
# bindings/cpp/run-tests.sh: build and run the tests of the C++ wrapper
# (bindings/cpp/include/mailoauth.hpp) and of the C packaging (bindings/c).
#
#   1. header hygiene: mailoauth.hpp alone compiles with strict warnings
#      (-Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast)
#      as C++17 and C++20;
#   2. tests/test_json.cpp (no stack) and tests/test_binding.cpp (the local
#      stack) built with g++ -std=c++17 -Wall -Wextra -Werror and
#      -fsanitize=address,undefined against target/debug/libmailoauth.so,
#      run with LeakSanitizer on (tests/c/lsan.supp);
#   3. packaging: bindings/c/stage.sh into a temporary prefix, then a C host,
#      a C++ host (shared) and a C host linked statically, each built only
#      with `pkg-config --cflags --libs mailoauth`, run and checked.
# Ends with "N passed, N failed"; exits non-zero if anything failed.
#
# Expects: the library built (`cargo build --lib`; CARGO_TARGET_DIR is
# honoured), the local stack up (tests/stack/up.sh) with
# MAILOAUTH_STACK_FILE pointing at it, g++ and pkg-config (Debian: pkgconf),
# python3 (tests/stack/seed.py). Environment: CXX (default g++), CC (default
# gcc), MAILOAUTH_TEST_LOOPS (scales the property loops), SKIP_STATIC=1 skips
# the static link (slow with a debug build), VALGRIND=1 adds valgrind runs of
# uninstrumented builds (about 3 minutes more).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CXX="${CXX:-g++}"
CC="${CC:-gcc}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LIBDIR="$TARGET_DIR/debug"
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/mailoauth-cpp-tests.XXXXXX")"
trap 'rm -rf -- "$BUILD"' EXIT

die() { echo "run-tests.sh: $*" >&2; exit 1; }
[[ -f "$LIBDIR/libmailoauth.so" ]] || die "$LIBDIR/libmailoauth.so missing: run 'cargo build --lib' first"
[[ -f "$ROOT/include/mailoauth.h" ]] || die "include/mailoauth.h missing"
command -v "$CXX" >/dev/null || die "$CXX not found"
command -v pkg-config >/dev/null || die "pkg-config not found (Debian: apt-get install pkgconf)"

total_passed=0
total_failed=0
summary=()
record() { # label passed failed note
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    if [[ $3 -eq 0 ]]; then summary+=("$1: ok ($2 passed${4:+; $4})"); else summary+=("$1: FAILED ($2 passed, $3 failed${4:+; $4})"); fi
}

# ------------------------------------------------------------ 1. header hygiene
hygiene_ok=0
hygiene_bad=0
# The min/max macros stand in for <windows.h> without NOMINMAX, which legacy
# Windows hosts include first. They are defined after the standard headers
# mailoauth.hpp uses (libstdc++ would #undef them otherwise).
{
    grep -h '^#include <' "$HERE/include/mailoauth.hpp"
    printf '#define min(a, b) ((a) < (b) ? (a) : (b))\n#define max(a, b) ((a) > (b) ? (a) : (b))\n'
    printf '#include "mailoauth.hpp"\nint main() { return 0; }\n'
} >"$BUILD/hygiene.cpp"
for std in c++17 c++20; do
    echo "== mailoauth.hpp alone, -std=$std, strict warnings, windows.h-style min/max macros"
    if "$CXX" -std="$std" -Wall -Wextra -Werror -Wpedantic -Wshadow -Wconversion -Wsign-conversion \
            -Wold-style-cast -Wnon-virtual-dtor -I"$ROOT/include" -I"$HERE/include" -fsyntax-only "$BUILD/hygiene.cpp"; then
        hygiene_ok=$((hygiene_ok + 1))
    else
        hygiene_bad=$((hygiene_bad + 1))
    fi
done
# The README's "ten lines" must compile: its first ```cpp block, the
# #include lines at file scope and the rest as the body of a function.
echo "== README.md example compiles"
readme_block="$(awk '/^```cpp$/{on=1; next} /^```$/{if (on) exit} on' "$HERE/README.md")"
{
    printf '%s\n' "$readme_block" | grep '^#include'
    printf '#include <chrono>\n#include <string>\n#include <vector>\n'
    printf 'static void process(const std::vector<uint8_t> &) {}\n'
    printf 'void example(const std::string &subject, const std::string &body) {\n'
    printf '%s\n' "$readme_block" | grep -v '^#include'
    printf '}\n'
} >"$BUILD/readme_example.cpp"
if [[ -n "$readme_block" ]] && "$CXX" -std=c++17 -Wall -Wextra -Werror -Wno-unused-function -I"$ROOT/include" \
    -I"$HERE/include" -fsyntax-only "$BUILD/readme_example.cpp"; then
    hygiene_ok=$((hygiene_ok + 1))
else
    hygiene_bad=$((hygiene_bad + 1))
    echo "FAIL: the README example does not compile ($BUILD/readme_example.cpp)" >&2
fi
record "header hygiene and README example" "$hygiene_ok" "$hygiene_bad"

# ---------------------------------------------------- 2. the tests under ASan
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -g -fsanitize=address,undefined -fno-omit-frame-pointer
    -I"$ROOT/include" -I"$HERE/include" -I"$HERE/tests")
# tests/alloc_audit.hpp: every buffer and handle the library hands out must
# come back through its free function (LeakSanitizer cannot see these: the
# library keeps them in its own table).
AUDIT_WRAPS="mailoauth_context_describe,mailoauth_last_error,mailoauth_op_info,mailoauth_op_result"
AUDIT_WRAPS+=",mailoauth_account_list,mailoauth_smtp_send,mailoauth_smtp_send_mime,mailoauth_smtp_forward"
AUDIT_WRAPS+=",mailoauth_mailbox_poll,mailoauth_mailbox_list_folders,mailoauth_token_get,mailoauth_mailbox_fetch"
AUDIT_WRAPS+=",mailoauth_context_new,mailoauth_consent_begin,mailoauth_mailbox_open,mailoauth_account_test_begin"
AUDIT_WRAPS+=",mailoauth_string_free,mailoauth_secret_free,mailoauth_bytes_free,mailoauth_context_free"
AUDIT_WRAPS+=",mailoauth_op_free,mailoauth_mailbox_free"
LDFLAGS=(-L"$LIBDIR" -lmailoauth -Wl,-rpath,"$LIBDIR" "-Wl,--wrap=${AUDIT_WRAPS//,/,--wrap=}" -lpthread -ldl)
PROGRAMS=(test_json test_binding)
for prog in "${PROGRAMS[@]}"; do
    echo "== compile $prog (ASan + UBSan)"
    "$CXX" "${CXXFLAGS[@]}" -o "$BUILD/$prog" "$HERE/tests/$prog.cpp" "${LDFLAGS[@]}"
    # as tests/c/run.sh does: make sure ASan really got linked in
    nm "$BUILD/$prog" | grep -c __asan_init >/dev/null || die "__asan_init not found in $prog"
done

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$ROOT/tests/c/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for prog in "${PROGRAMS[@]}"; do
    echo "== run $prog"
    log="$BUILD/$prog.log"
    rc=0
    "$BUILD/$prog" >"$log" 2>&1 || rc=$?
    cat "$log"
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
    p=0 f=0
    if [[ -n "$line" ]]; then
        p="${line%% passed*}"
        f="${line#*passed, }"
        f="${f%% failed}"
    fi
    # a crash, a sanitizer report or a missing summary line is one more failure
    note=""
    if [[ $rc -ne 0 && $f -eq 0 ]] || [[ -z "$line" ]]; then
        f=$((f + 1))
        note="exit $rc; see the output above"
    fi
    record "$prog" "$p" "$f" "$note"
done
unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

# Optional (VALGRIND=1, about 3 minutes): uninstrumented builds under valgrind,
# as tests/c/run.sh does (definite leaks and memory errors exit 99).
if [[ "${VALGRIND:-0}" == 1 ]]; then
    for prog in "${PROGRAMS[@]}"; do
        echo "== valgrind $prog"
        plain=()
        for flag in "${CXXFLAGS[@]}"; do [[ $flag == -fsanitize=* ]] || plain+=("$flag"); done
        "$CXX" "${plain[@]}" -o "$BUILD/${prog}_plain" "$HERE/tests/$prog.cpp" "${LDFLAGS[@]}"
        log="$BUILD/${prog}_vg.log"
        rc=0
        MAILOAUTH_TEST_TIMEOUT=1800 valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --num-callers=40 --suppressions="$ROOT/tests/c/valgrind.supp" --quiet \
            "$BUILD/${prog}_plain" >"$log" 2>&1 || rc=$?
        cat "$log"
        line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
        p=0 f=0
        if [[ -n "$line" ]]; then
            p="${line%% passed*}"
            f="${line#*passed, }"
            f="${f%% failed}"
        fi
        note=""
        if [[ $rc -ne 0 && $f -eq 0 ]] || [[ -z "$line" ]]; then
            f=$((f + 1))
            note="exit $rc (99: valgrind found errors or definite leaks)"
        fi
        record "valgrind $prog" "$p" "$f" "$note"
    done
fi

# ------------------------------------------------------------- 3. packaging
echo "== C packaging: stage.sh into a temporary prefix"
PREFIX="$BUILD/prefix"
pk_ok=0
pk_bad=0
pk() { # description command...
    local what="$1"
    shift
    if "$@"; then
        pk_ok=$((pk_ok + 1))
    else
        pk_bad=$((pk_bad + 1))
        echo "FAIL: packaging: $what" >&2
    fi
}
stage_args=(--profile debug "$PREFIX")
[[ "${SKIP_STATIC:-0}" == 1 ]] && stage_args=(--no-static "${stage_args[@]}")
if "$ROOT/bindings/c/stage.sh" "${stage_args[@]}"; then
    export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
    header_version="$(sed -n 's/^#define MAILOAUTH_VERSION "\(.*\)"$/\1/p' "$ROOT/include/mailoauth.h")"
    pk "pkg-config --modversion is the header's version" test "$(pkg-config --modversion mailoauth)" = "$header_version"
    pk "--cflags points into the prefix" test "$(pkg-config --cflags mailoauth | sed 's/ *$//')" = "-I$PREFIX/include"
    pk "--libs links -lmailoauth from the prefix" test "$(pkg-config --libs mailoauth | sed 's/ *$//')" = "-L$PREFIX/lib -lmailoauth"
    pk "the headers are installed" test -f "$PREFIX/include/mailoauth.h" -a -f "$PREFIX/include/mailoauth.hpp"
    pkg_libdir="$(pkg-config --variable=libdir mailoauth)"
    # shellcheck disable=SC2046  # word splitting of pkg-config output is intended
    pk "a C host builds with pkg-config" "$CC" -std=c11 -Wall -Wextra -Werror -o "$BUILD/version_host" \
        "$ROOT/bindings/c/tests/version_host.c" $(pkg-config --cflags --libs mailoauth) -Wl,-rpath,"$pkg_libdir"
    out="$("$BUILD/version_host" 2>&1 || echo "exit $?")"
    echo "$out"
    pk "the C host prints the library version" test "$out" = "mailoauth $header_version (ABI 1)"
    pk "the C host uses the staged library" sh -c "ldd '$BUILD/version_host' | grep -q '$PREFIX/lib/libmailoauth.so'"
    # shellcheck disable=SC2046
    pk "a C++ host builds with pkg-config" "$CXX" -std=c++17 -Wall -Wextra -Werror -o "$BUILD/version_host_cpp" \
        "$ROOT/bindings/c/tests/version_host.cpp" $(pkg-config --cflags --libs mailoauth) -Wl,-rpath,"$pkg_libdir"
    out="$("$BUILD/version_host_cpp" 2>&1 || echo "exit $?")"
    echo "$out"
    pk "the C++ host prints the library version" test "$out" = "mailoauth $header_version via C++ (microsoft)"
    if [[ "${SKIP_STATIC:-0}" != 1 ]]; then
        # static: the archive plus the Libs.private of the .pc file
        # shellcheck disable=SC2046
        pk "a C host links statically with pkg-config --static" "$CC" -std=c11 -Wall -Wextra -Werror \
            -o "$BUILD/version_host_static" "$ROOT/bindings/c/tests/version_host.c" $(pkg-config --cflags mailoauth) \
            "$pkg_libdir/libmailoauth.a" $(pkg-config --static --libs-only-l mailoauth | sed 's/-lmailoauth//')
        out="$("$BUILD/version_host_static" 2>&1 || echo "exit $?")"
        echo "$out"
        pk "the static host runs" test "$out" = "mailoauth $header_version (ABI 1)"
        pk "the static host needs no libmailoauth.so" sh -c "! ldd '$BUILD/version_host_static' | grep -q libmailoauth"
    fi
    # stage.sh refuses what it cannot do
    pk "stage.sh refuses a relative prefix" sh -c "! '$ROOT/bindings/c/stage.sh' --profile debug relative/prefix 2>/dev/null"
    pk "stage.sh refuses an unknown profile" sh -c "! '$ROOT/bindings/c/stage.sh' --profile fast '$BUILD/x' 2>/dev/null"
    # DESTDIR: files below DESTDIR, the .pc names the final prefix
    pk "stage.sh honours DESTDIR" sh -c "DESTDIR='$BUILD/dest' '$ROOT/bindings/c/stage.sh' --profile debug --no-static \
        --libdir lib/x86_64-linux-gnu /opt/mailoauth >/dev/null && \
        grep -qx 'prefix=/opt/mailoauth' '$BUILD/dest/opt/mailoauth/lib/x86_64-linux-gnu/pkgconfig/mailoauth.pc' && \
        grep -qx 'libdir=\${exec_prefix}/lib/x86_64-linux-gnu' '$BUILD/dest/opt/mailoauth/lib/x86_64-linux-gnu/pkgconfig/mailoauth.pc' && \
        test -f '$BUILD/dest/opt/mailoauth/lib/x86_64-linux-gnu/libmailoauth.so' && test ! -e /opt/mailoauth/include/mailoauth.hpp"
else
    pk_bad=$((pk_bad + 1))
    echo "FAIL: stage.sh failed" >&2
fi
record "C packaging (pkg-config)" "$pk_ok" "$pk_bad"

echo "== summary"
printf '%s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
