#!/usr/bin/env bash
# End-to-end timeline benchmark against a real S3 server: installs (once) and starts Garage on
# loopback, runs framecache's bench_timeline example and prints its JSON line.
#
#   scripts/bench.sh [--frames 300] [--width 1280] [--height 720] [--runs 3] [--long 10000]
#                    [--seed PATH/run.sh]
#
# With --seed, also runs the Python module's benchmark script (given by path; it reads the
# same AWS_* environment) on the same server and frame count, prints its JSON line, and then
# one JSON line of ratios (seed time / framecache time).
set -euo pipefail
cd "$(dirname "$0")/.."

frames=300 width=1280 height=720 runs=3 long=10000 seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) frames=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --height) height=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --long) long=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh >&2
state=$(mktemp -d "${TMPDIR:-/tmp}/framecache-bench.XXXXXX")
cleanup() { scripts/garage.sh stop "$state" >&2; rm -rf "$state"; }
trap cleanup EXIT
scripts/garage.sh start "$state" >&2
# shellcheck disable=SC1091
source "$state/env"

# One download per machine: 4 processes warming one timeline together on one cache directory,
# GetObject requests counted by Garage itself, against one process alone.
now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 3))" "$1"; }
get_objects() {
  curl -sf "$GARAGE_METRICS_URL" | awk '/^api_s3_request_counter\{.*api_endpoint="GetObject"/ {n += $NF} END {print n + 0}'
}
cargo build --release --locked --bin framecache >&2
fleet_tl="fleet-$$"
target/release/framecache --backend s3 --cache-dir "$state/fleet-writer" demo --timeline "$fleet_tl" \
  --frames "$frames" --width "$width" --height "$height" >/dev/null
before=$(get_objects)
start=$(now)
target/release/framecache --backend s3 --cache-dir "$state/fleet-one" warm "$fleet_tl" >/dev/null
one_s=$(since "$start")
one_gets=$(( $(get_objects) - before ))
before=$(get_objects)
start=$(now)
for _ in 1 2 3 4; do
  target/release/framecache --backend s3 --cache-dir "$state/fleet-four" warm "$fleet_tl" >/dev/null &
done
wait
four_s=$(since "$start")
four_gets=$(( $(get_objects) - before ))
echo "{\"fleet_frames\": $frames, \"one_process_get_objects\": $one_gets, \"one_process_s\": $one_s, \"four_processes_get_objects\": $four_gets, \"four_processes_s\": $four_s}"

cargo build --release --locked --example bench_timeline >&2
ours=$(target/release/examples/bench_timeline --frames "$frames" --width "$width" \
  --height "$height" --runs "$runs" --long "$long")
echo "$ours"

if [ -n "$seed" ]; then
  theirs=$("$seed" --frames "$frames" --width "$width" --height "$height" \
    --timeline "seed-bench-$$")
  echo "$theirs"
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, seed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n = ours["frames"]
seed_loads = [v for k, v in seed.items() if k.startswith("load_cached_frames_") and k[-2:] == "_s"
              and "b64" not in k]
seed_load = min(seed_loads)
print(json.dumps({
    "ratio_cache_frames": round(seed["cache_frames_s"] / ours["cache_frames_s"], 2),
    "ratio_load_cold": round(seed_load / ours["load_cold_s"], 2),
    "ratio_load_warm": round(seed_load / ours["load_warm_s"], 2),
    "ratio_load_hot": round(seed_load / ours["load_hot_s"], 2),
    "ratio_load_hot_read_only": round(seed_load / ours["load_hot_read_only_s"], 2),
    "ratio_load_warm_jpeg_only": round(seed_load / ours["load_warm_jpeg_only_s"], 2),
    "cold_over_decode_all_cores": round(ours["load_cold_s"] / ours["decode_all_cores_s"], 2),
    "four_processes_decodes_per_frame": round(ours["four_processes"]["decodes_total"] / n, 2),
    "ratio_load_b64_warm": round(seed["load_cached_frames_b64_s"] / ours["load_b64_warm_s"], 2),
    "seed_load_s_best": seed_load,
    "seed_encode_per_frame_ms": round(1000 * seed["local_jpeg_encode_s"] / n, 3),
    "seed_decode_per_frame_ms": round(1000 * seed["local_jpeg_decode_s"] / n, 3),
}))
PY
fi
