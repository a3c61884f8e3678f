#!/bin/sh
# Fuzzes one target for a while: fuzz/run.sh <target> [seconds] [libFuzzer flags…]
#
# Builds the targets first (nightly flags on the stable toolchain through
# RUSTC_BOOTSTRAP=1; skip with NO_BUILD=1), then runs libFuzzer in fork mode
# (one worker, crashes and OOMs recorded in artifacts/<target>/ and the run
# goes on) over work/<target> (new inputs; not committed) and the seeds in
# corpus/<target>. The log is logs/<target>.log.
set -eu
cd "$(dirname "$0")"
t=${1:?usage: fuzz/run.sh <target> [seconds] [libFuzzer flags…]}
secs=${2:-300}
shift; [ $# -gt 0 ] && shift
if [ -z "${NO_BUILD:-}" ]; then
    # MAILOAUTH_SKIP_HEADER: the library's build script does not rewrite
    # include/mailoauth.h from a fuzz build.
    MAILOAUTH_SKIP_HEADER=1 RUSTC_BOOTSTRAP=1 cargo fuzz build -O "$t"
fi
mkdir -p "work/$t" "artifacts/$t" logs
status=0
"target/x86_64-unknown-linux-gnu/release/$t" "work/$t" "corpus/$t" \
    -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$@" \
    >"logs/$t.log" 2>&1 || status=$?
grep -E '^#[0-9]+: cov' "logs/$t.log" | tail -n 1 || true
ls "artifacts/$t"
exit $status
