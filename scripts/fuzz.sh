#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (default 60 s), two at a time, on
# its committed seed corpus plus what earlier runs found (kept under fuzz/corpus-local/,
# not committed). A crash stops that target and leaves its input in fuzz/artifacts/NAME/;
# add the input to fuzz/corpus/NAME/ as a regression case once fixed (the test suite
# replays fuzz/corpus/ on every run: tests/fuzz_corpora.rs).
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: scripts/fuzz.sh [seconds per target] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
cargo +nightly fuzz build --fuzz-dir fuzz "${targets[@]}" 2>/dev/null ||
    for t in "${targets[@]}"; do cargo +nightly fuzz build --fuzz-dir fuzz "$t"; done

run() {
    local t="$1"
    mkdir -p "fuzz/corpus-local/$t" "fuzz/artifacts/$t"
    # -rss_limit_mb: the targets cap frames at 4 Mpx, so more memory than this is a bug.
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus-local/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"fuzz/artifacts/$t/log" 2>&1; then
        echo "$t: ok ($(grep -h 'stat::number_of_executed_units' "fuzz/artifacts/$t/log" | awk '{print $2}') execs in ${secs}s)"
    else
        echo "$t: FAILED, see fuzz/artifacts/$t/log"
        return 1
    fi
}

status=0
pids=()
for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
    # Two at a time: the machine is shared.
    if [ ${#pids[@]} -ge 2 ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
