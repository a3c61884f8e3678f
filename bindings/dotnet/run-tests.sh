#!/usr/bin/env bash
# Builds and runs every check of the .NET binding; exits non-zero on any failure.
#   1. the P/Invoke lint (its self-test first)
#   2. the binding alone with mcs -sdk:4.6.2 (the .NET Framework 4.6.2 API surface), and the
#      test runner the same way
#   3. the foreign-allocator library: cargo build --lib --features foreign-allocator into
#      target/foreign-alloc (debug profile; MAILOAUTH_FOREIGN_PROFILE=release for release)
#      and the allocator's unit tests (src/foreign_alloc.rs compiled alone with rustc --test)
#   4. the suite on Mono and on CoreCLR 3.1, against the normal library and against the
#      foreign-allocator one (4 runs)
#   5. the NuGet staging (stage-package.sh) and the package files being well-formed XML
# Expects: the local stack up (MAILOAUTH_STACK_FILE), the library built (the newer of
# target/debug and target/release libmailoauth.so, or MAILOAUTH_LIB_DIR), mcs/mono
# (apt: mono-mcs mono-runtime mono-devel) and the CoreCLR 3.1 runtime (pip dotnetcore2==3.1.23
# into ~/.cache/mailoauth-tools/dotnetcore31, or DOTNET31=/path/to/dotnet).
# Last line: "dotnet: N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
start=$(date +%s)

export MAILOAUTH_REQUIRE_STACK="${MAILOAUTH_REQUIRE_STACK:-1}"
export MAILOAUTH_HEADER="$root/include/mailoauth.h"
dotnet31="${DOTNET31:-$HOME/.cache/mailoauth-tools/dotnetcore31/dotnetcore2/bin/dotnet}"
profile="${MAILOAUTH_FOREIGN_PROFILE:-debug}"
foreign_dir="$root/target/foreign-alloc/$profile"
if [[ -n "${MAILOAUTH_LIB_DIR:-}" ]]; then
  lib_dir="$MAILOAUTH_LIB_DIR"
else
  newest="$(ls -t target/debug/libmailoauth.so target/release/libmailoauth.so 2>/dev/null | head -1 || true)"
  lib_dir="$(dirname "${newest:-target/debug/libmailoauth.so}")"
  lib_dir="$root/$lib_dir"
fi
out="$(mktemp -d /tmp/mailoauth-dotnet.XXXXXX)"
trap 'rm -rf "$out"' EXIT

total_passed=0
total_failed=0
failures=()
step() {  # step LABEL COMMAND...: a check that counts as one test
  local label="$1"
  shift
  echo "--- $label"
  if "$@"; then
    total_passed=$((total_passed + 1))
  else
    total_failed=$((total_failed + 1))
    failures+=("$label")
  fi
}
suite() {  # suite LABEL LIBDIR [ENV=VALUE...] -- COMMAND...: one run of the test exe
  local label="$1" libdir="$2"
  shift 2
  local envs=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
  shift
  echo "--- $label (library: $libdir)"
  if [[ ! -f "$libdir/libmailoauth.so" ]]; then
    echo "FAIL [$label] $libdir/libmailoauth.so is missing"
    total_failed=$((total_failed + 1)); failures+=("$label"); return
  fi
  local dir="$out/run-$label" log
  mkdir -p "$dir"
  cp "$out/MailOAuth.Tests.exe" "$out/MailOAuth.Tests.runtimeconfig.json" "$dir/"
  log="$dir/log.txt"
  (cd "$dir" && env LD_LIBRARY_PATH="$libdir" "${envs[@]}" "$@" MailOAuth.Tests.exe) >"$log" 2>&1
  local rc=$?
  grep -E '^(FAIL|SKIP) ' "$log" | sed "s/^/[$label] /"
  grep -A30 -E '^FAIL ' "$log" | grep -E '^  at ' | head -20 | sed "s/^/[$label] /"
  local summary
  summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)"
  if [[ -z "$summary" ]]; then
    echo "[$label] no summary line (exit $rc); the end of its output:"
    tail -30 "$log" | sed "s/^/[$label] /"
    total_failed=$((total_failed + 1)); failures+=("$label"); return
  fi
  echo "[$label] $summary (exit $rc)"
  local p f
  p="$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$summary")"
  f="$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$summary")"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  if ((rc != 0 && f == 0)); then
    total_failed=$((total_failed + 1))
  fi
  if ((rc != 0 || f != 0)); then failures+=("$label"); fi
  rm -f "$dir"/mono_crash.*.json
}

# ---- tools ------------------------------------------------------------------------------
missing=()
command -v mcs >/dev/null || missing+=("mcs (apt-get install mono-mcs)")
command -v mono >/dev/null || missing+=("mono (apt-get install mono-runtime)")
[[ -f /usr/lib/mono/4.6.2-api/mscorlib.dll ]] || missing+=("the 4.6.2 reference assemblies (apt-get install mono-devel)")
[[ -x "$dotnet31" ]] || missing+=("CoreCLR 3.1 at $dotnet31 (pip install --no-deps --target ~/.cache/mailoauth-tools/dotnetcore31 dotnetcore2==3.1.23)")
if ((${#missing[@]})); then
  printf 'missing: %s\n' "${missing[@]}"
  echo "dotnet: 0 passed, 1 failed"
  exit 1
fi

# ---- 1. lint ----------------------------------------------------------------------------
step "lint self-test" python3 "$here/tools/check_pinvoke.py" --self-test
step "lint" python3 "$here/tools/check_pinvoke.py" "$here"/src/*.cs "$here"/tests/*.cs

# ---- 2. builds --------------------------------------------------------------------------
step "mcs -sdk:4.6.2 binding" mcs -sdk:4.6.2 -langversion:7.2 -target:library -warnaserror+ -out:"$out/MailOAuth.dll" "$here"/src/*.cs
step "mcs -sdk:4.6.2 tests" mcs -sdk:4.6.2 -warnaserror+ -debug -r:System.Net.dll -out:"$out/MailOAuth.Tests.exe" \
  "$here"/src/*.cs "$here"/tests/*.cs
cat >"$out/MailOAuth.Tests.runtimeconfig.json" <<'JSON'
{ "runtimeOptions": { "tfm": "netcoreapp3.1",
    "framework": { "name": "Microsoft.NETCore.App", "version": "3.1.23" },
    "configProperties": { "System.Globalization.Invariant": true } } }
JSON

# ---- 3. the foreign-allocator library ---------------------------------------------------
# Its own target dir (a cdylib's file name carries no feature hash, so sharing target/ would
# swap libraries under other tests), only the cdylib, no debug info: about half the time of
# a full debug build of the crate and its dependencies.
build_foreign() {
  local flags=(--lib --crate-type cdylib --features foreign-allocator --quiet)
  [[ "$profile" == release ]] && flags+=(--release)
  CARGO_PROFILE_DEV_DEBUG=0 CARGO_TARGET_DIR="$root/target/foreign-alloc" cargo rustc "${flags[@]}"
}
step "cargo build foreign-allocator ($profile)" build_foreign
# The allocator's own unit tests: the module is self-contained, so rustc builds it alone in a second.
foreign_unit_tests() {
  rustc --edition 2024 --test -o "$out/foreign_alloc_tests" "$root/src/foreign_alloc.rs" &&
    "$out/foreign_alloc_tests" --quiet >"$out/foreign_alloc_tests.log" 2>&1 ||
    { cat "$out/foreign_alloc_tests.log"; return 1; }
}
step "foreign_alloc unit tests" foreign_unit_tests

# ---- 4. the suite, four times -----------------------------------------------------------
if [[ -f "$out/MailOAuth.Tests.exe" ]]; then
  suite mono "$lib_dir" -- mono --debug
  suite coreclr31 "$lib_dir" -- "$dotnet31"
  suite mono-foreign-alloc "$foreign_dir" MAILOAUTH_FOREIGN_ALLOC=1 -- mono --debug
  suite coreclr31-foreign-alloc "$foreign_dir" MAILOAUTH_FOREIGN_ALLOC=1 -- "$dotnet31"
fi

# ---- 5. package layout ------------------------------------------------------------------
check_package() {
  python3 - "$here" <<'PY' || return 1
import sys, xml.dom.minidom as m
d = sys.argv[1]
for f in ("MailOAuth.csproj", "MailOAuth.nuspec", "package/build/net462/MailOAuth.targets"):
    m.parse(f"{d}/{f}")
PY
  "$here/stage-package.sh" "$out/stage" --linux-x64 "$lib_dir/libmailoauth.so" >/dev/null &&
    [[ -f "$out/stage/lib/net462/MailOAuth.dll" && -f "$out/stage/runtimes/linux-x64/native/libmailoauth.so" &&
       -f "$out/stage/build/net462/MailOAuth.targets" && -f "$out/stage/runtimes/win-x64/native/MISSING.txt" ]]
}
step "package staging" check_package

echo
if ((${#failures[@]})); then echo "failed: ${failures[*]}"; fi
echo "took $(($(date +%s) - start)) s"
echo "dotnet: $total_passed passed, $total_failed failed"
((total_failed == 0 && total_passed > 0))
