#!/usr/bin/env bash
# Disk-tier eviction at scale: builds the bench_evict example in release and prints one JSON
# line per size (see docs/performance.md for what each figure is).
#
#   scripts/bench-evict.sh [ENTRIES...]      (default: 100000 400000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 400000)
args=()
for n in "${sizes[@]}"; do args+=(--entries "$n"); done
cargo build --release --example bench_evict >&2
target/release/examples/bench_evict "${args[@]}"
