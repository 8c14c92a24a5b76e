#!/usr/bin/env bash
# Python benchmark against a real S3 server: installs (once) and starts Garage on loopback,
# builds the Python package (release) into framecache's virtualenv, then measures
#   - load_cached_frames through the drop-in against the Python frame cache module, on one
#     timeline: cold (new process, empty disk cache), warm (new process, filled disk cache),
#     hot (second call in one process); the module has no cache, its best call is used;
#   - framecache.FrameCache against the Rust API (examples/bench_timeline) for the same
#     cold, warm, hot and hot read-only loads: the overhead of Python.
# Each of --runs rounds runs every contender once, interleaved.
# Prints each run's JSON line, then one JSON line of results.
#
#   scripts/bench-python.sh --seed PATH/TO/baseline [--frames 300] [--width 1280]
#                           [--height 720] [--runs 3]
#
# --seed is the directory holding the module (core/detect/checkpoint/frames.py) or its run.sh;
# its dependencies (boto3, pillow, numpy) go into a virtualenv of their own, beside ours.
set -euo pipefail
cd "$(dirname "$0")/.."

frames=300 width=1280 height=720 runs=3 seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) frames=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --height) height=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$seed" ] || { echo "--seed PATH is required (the Python module's directory)" >&2; exit 2; }
[ -d "$seed" ] || seed=$(dirname "$seed")
seed=$(cd "$seed" && pwd)
[ -f "$seed/core/detect/checkpoint/frames.py" ] || { echo "no module under $seed" >&2; exit 2; }

scripts/setup.sh >&2
venv=$(scripts/python-env.sh)
seed_venv="$(dirname "$venv")/venv-seed-$(basename "$venv" | sed 's/^venv-//')"
if [ ! -x "$seed_venv/bin/python" ]; then
  python3 -m venv "$seed_venv" >&2
  "$seed_venv/bin/python" -m pip install -q boto3 pillow numpy >&2
fi
(cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --locked --quiet >&2)
cargo build --release --locked --example bench_timeline >&2

state=$(mktemp -d "${TMPDIR:-/tmp}/framecache-pybench.XXXXXX")
cleanup() { scripts/garage.sh stop "$state" >&2; rm -rf "$state"; }
trap cleanup EXIT
scripts/garage.sh start "$state" >&2
# shellcheck disable=SC1091
source "$state/env"
export FRAMECACHE_BACKEND=s3

bench() { "$venv/bin/python" python/bench/bench_load.py "$@"; }
timeline="pybench-$$"
log="$state/results.jsonl"
bench prepare "$timeline" "$frames" "$width" "$height" | tee -a "$log"
# Rounds interleave every contender, so a busy machine slows them alike.
for run in $(seq 1 "$runs"); do
  "$seed_venv/bin/python" python/bench/bench_load.py seed "$seed" "$timeline" | tee -a "$log"
  bench dropin "$timeline" "$state/disk-$run" | tee -a "$log"   # cold, then hot
  bench dropin "$timeline" "$state/disk-$run" | tee -a "$log"   # warm, then hot
  bench api "$frames" "$width" "$height" 3 | tee -a "$log"
  target/release/examples/bench_timeline --frames "$frames" --width "$width" --height "$height" \
    --runs 3 --long 0 | tee -a "$log"
  rm -rf "$state/disk-$run"   # its raw frames take 24x the JPEGs' space
done

"$venv/bin/python" - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = statistics.median
seed = [r for r in rows if r.get("phase") == "seed"]
drop = [r for r in rows if r.get("phase") == "dropin"]
api = [r for r in rows if r.get("phase") == "api"]
rust = [r for r in rows if r.get("tool") == "framecache"]
# Two JPEG decoders (libjpeg-turbo in Pillow, zune-jpeg) may differ by a unit here and there.
sums = [r["checksum"] for r in seed + drop]
assert len({r["frames"] for r in seed + drop}) == 1, "the module and the drop-in loaded different frames"
assert max(sums) - min(sums) <= 0.01 * max(sums), "the module and the drop-in loaded different pixels"
seed_best = med([min(r["first_s"], r["second_s"]) for r in seed])
cold = med([r["first_s"] for r in drop if r["first"] == "cold"])
warm = med([r["first_s"] for r in drop if r["first"] == "warm"])
hot = med([r["hot_s"] for r in drop])
out = {
    "frames": api[0]["frames"],
    "rounds": len(seed),
    "seed_load_s": round(seed_best, 3),
    "dropin_cold_s": round(cold, 3), "dropin_warm_s": round(warm, 3), "dropin_hot_s": round(hot, 3),
    "ratio_cold": round(seed_best / cold, 2), "ratio_warm": round(seed_best / warm, 2),
    "ratio_hot": round(seed_best / hot, 2),
}
# Python over Rust: the medians of each round's medians, and the best rounds (the least
# disturbed by other work on the machine).
for kind in ("cold", "warm", "hot", "hot_read_only"):
    py = [r[f"load_{kind}_s"] for r in api]
    rs = [r[f"load_{kind}_s"] for r in rust]
    out[f"api_{kind}_s"] = round(med(py), 3)
    out[f"rust_{kind}_s"] = round(med(rs), 3)
    out[f"python_overhead_{kind}_pct"] = round(100 * (med(py) / med(rs) - 1), 1)
    out[f"python_overhead_{kind}_best_pct"] = round(100 * (min(py) / min(rs) - 1), 1)
print(json.dumps(out))
PY
