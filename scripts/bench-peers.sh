#!/usr/bin/env bash
# framecache against the Python frame cache module and an fsspec peer, on one real S3 server
# (Garage on loopback), every figure in one run: each of --rounds rounds runs every contender
# once, each step a new process, interleaved, so that a busy machine slows them alike.
#   - warm load_cached_frames (new process, filled disk cache) against the module (no cache:
#     its best of two loads) and against the peer (fsspec simplecache over s3fs, Pillow in
#     threads, warm cache directory);
#   - cold load (new process, empty disk cache) against fetching the same JPEGs cold plus
#     decoding them from memory on every core;
#   - cache_frames (the drop-in) against the module's, and against max(encode on every core,
#     upload of the encoded JPEGs);
#   - `framecache export` (a new process, warm disk) against the module's
#     load_cached_frames_b64.
# Prints each step's JSON line, then one JSON line of medians and ratios.
#
# Nothing is deleted until the run ends (about 1 GB of cache directories per contender and
# round): on a filesystem without a journal, ext4 skips inodes deleted in the last minutes
# when it creates files, so deletions between steps made the next step's file creations
# (disk-tier entries, the module's temp files, exported frames) several times dearer.
#
#   scripts/bench-peers.sh --seed PATH/TO/baseline [--frames 300] [--width 1280]
#                          [--height 720] [--rounds 3] [--no-build] [--variant NAME=DIR ...]
#
# --variant NAME=DIR adds a build of the package (DIR holds a `framecache` package directory,
# e.g. a copy of python/framecache with its compiled module, and optionally `bin/framecache`,
# that build's command line for the export step) run in every round beside the current one,
# for before/after figures side by side; each variant gets its own ratios.
# --seed is the module's directory (core/detect/checkpoint/frames.py). The module (boto3,
# pillow, numpy) and the peer (fsspec, s3fs, pillow, numpy) get virtualenvs of their own
# beside framecache's. --no-build uses the package and binary built last (release).
set -euo pipefail
cd "$(dirname "$0")/.."

frames=300 width=1280 height=720 rounds=3 seed="" build=1 variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) frames=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --height) height=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --variant) variants+=("$2"); shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$seed" ] || { echo "--seed PATH is required (the Python module's directory)" >&2; exit 2; }
[ -d "$seed" ] || seed=$(dirname "$seed")
seed=$(cd "$seed" && pwd)
[ -f "$seed/core/detect/checkpoint/frames.py" ] || { echo "no module under $seed" >&2; exit 2; }

venv=$(scripts/python-env.sh)
other_venv() {  # NAME PACKAGES...: a virtualenv beside framecache's
  local dir
  dir="$(dirname "$venv")/venv-$1-$(basename "$venv" | sed 's/^venv-//')"
  shift
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.packages" 2>/dev/null)" != "$*" ]; then
    python3 -m venv "$dir" >&2
    "$dir/bin/python" -m pip install -q "$@" >&2
    echo "$*" > "$dir/.packages"
  fi
  echo "$dir"
}
seed_venv=$(other_venv seed boto3 pillow numpy)
peer_venv=$(other_venv peer fsspec s3fs pillow numpy)
target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
  scripts/setup.sh >&2
  (cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --locked --quiet >&2)
  cargo build --release --locked --bin framecache >&2
fi
cli="$target/release/framecache"
[ -x "$cli" ] || { echo "no release binary at $cli" >&2; exit 1; }

state=$(mktemp -d "${TMPDIR:-/tmp}/framecache-peers.XXXXXX")
cleanup() { scripts/garage.sh stop "$state/garage" >&2; rm -rf "$state"; }
trap cleanup EXIT
scripts/garage.sh start "$state/garage" >&2
# shellcheck disable=SC1091
source "$state/garage/env"
export FRAMECACHE_BACKEND=s3
# The server's CPU is read around each write (it shares the machine's cores).
GARAGE_PID=$(cat "$state/garage/pid")
export GARAGE_PID

# Every step starts with the page cache written back (`sync`, untimed): the raw frames a
# cold load leaves dirty (829 MB for 300 720p frames) would otherwise be written back during
# whichever step comes next.
fc() { sync; "$venv/bin/python" python/bench/bench_peers.py "$@"; }
timeline="peers-$$"
log="$state/results.jsonl"
echo "{\"phase\": \"machine\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"cpus\": $(nproc)}" | tee -a "$log"
fc prepare "$state" "$timeline" "$frames" "$width" "$height" | tee -a "$log"
for round in $(seq 1 "$rounds"); do
  d="$state/r$round"
  sync; "$seed_venv/bin/python" python/bench/bench_peers.py seed-load "$seed" "$timeline" | tee -a "$log"
  sync; "$peer_venv/bin/python" python/bench/peer_fsspec.py load "$timeline" "$d-peer" | tee -a "$log"  # cold
  sync; "$peer_venv/bin/python" python/bench/peer_fsspec.py load "$timeline" "$d-peer" | tee -a "$log"  # warm
  for variant in "framecache=" "${variants[@]}"; do
    export FRAMECACHE_BENCH_VARIANT="${variant%%=*}"
    export PYTHONPATH="${variant#*=}"
    v="$d-$FRAMECACHE_BENCH_VARIANT"
    fc bytes "$timeline" "$v-bytes" | tee -a "$log"
    fc load "$timeline" "$v-disk" | tee -a "$log"   # cold, then hot
    fc load "$timeline" "$v-disk" | tee -a "$log"   # warm, then hot
    fc decode "$timeline" "$v-bytes" | tee -a "$log"
    variant_cli="$cli"
    if [ -n "${variant#*=}" ] && [ -x "${variant#*=}/bin/framecache" ]; then
      variant_cli="${variant#*=}/bin/framecache"
    fi
    fc export "$variant_cli" "$timeline" "$v-disk" "$v-export" | tee -a "$log"
    fc write "$state" "w$round-$FRAMECACHE_BENCH_VARIANT-$$" "$v-write" | tee -a "$log"
  done
  unset FRAMECACHE_BENCH_VARIANT PYTHONPATH
  sync; "$seed_venv/bin/python" python/bench/bench_peers.py seed-write "$seed" "$state" "s$round-$$" | tee -a "$log"
done
echo "{\"phase\": \"machine\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"cpus\": $(nproc)}" | tee -a "$log"

"$venv/bin/python" - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
med = statistics.median
def of(phase, **match):
    return [r for r in rows if r["phase"] == phase and all(r.get(k) == v for k, v in match.items())]
def m(phase, key="s", **match):
    return med([r[key] for r in of(phase, **match)])
seed_load, seed_b64, seed_write = m("seed-load"), m("seed-load", "b64_s"), m("seed-write")
peer_warm, peer_cold = m("peer", first="warm"), m("peer", first="cold")
sums = [r["checksum"] for r in of("seed-load") + of("peer") + of("load")]
# The same frames, decoded by libjpeg-turbo in Pillow and in framecache (a unit may differ).
assert max(sums) - min(sums) <= 0.01 * max(sums), "the contenders loaded different pixels"
assert all(r["decodes"] == 0 for r in of("load", first="warm")), "a warm load decoded"
machine = of("machine")
out = {
    "frames": of("prepare")[0]["frames"], "rounds": len(of("seed-load")),
    "loadavg_before": machine[0]["loadavg"], "loadavg_after": machine[-1]["loadavg"],
    "seed_load_s": seed_load, "seed_b64_s": seed_b64, "seed_cache_frames_s": seed_write,
    "peer_cold_s": peer_cold, "peer_warm_s": peer_warm,
}
for variant in dict.fromkeys(r["variant"] for r in of("load")):
    def v(phase, key="s", **match):
        return m(phase, key, variant=variant, **match)
    warm, cold, hot = v("load", first="warm"), v("load", first="cold"), v("load", "hot_s")
    fetch, dec = v("bytes"), v("decode")
    write, encode, upload = v("write"), v("write", "encode_s"), v("write", "upload_s")
    export = v("export")
    out[variant] = {
        "cold_s": cold, "warm_s": warm, "hot_s": hot,
        "warm_import_s": v("load", "import_s", first="warm"),
        "bytes_cold_s": fetch, "decode_only_s": dec, "pillow_decode_s": v("decode", "pillow_s"),
        "cache_frames_s": write, "encode_s": encode, "upload_s": upload, "export_s": export,
        "warm_vs_module": seed_load / warm,
        "warm_vs_peer": peer_warm / warm,
        "cold_vs_bytes_plus_decode": cold / (fetch + dec),
        "cache_frames_vs_module": seed_write / write,
        "cache_frames_vs_max_encode_upload": write / max(encode, upload),
        # On cores the server shares, a write costs at least the CPU of its encode and of
        # its upload (client and server) spread over every core: time against that floor.
        "cache_frames_cpu_s": v("write", "cpu_s"),
        "cache_frames_server_cpu_s": v("write", "server_cpu_s"),
        "encode_cpu_s": v("write", "encode_cpu_s"),
        "upload_cpu_s": v("write", "upload_cpu_s") + v("write", "upload_server_cpu_s"),
        "cache_frames_vs_cpu_floor": write / (
            (v("write", "encode_cpu_s") + v("write", "upload_cpu_s")
             + v("write", "upload_server_cpu_s")) / of("machine")[0]["cpus"]
        ),
        "export_vs_module_b64": seed_b64 / export,
    }
def rounded(x):
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return round(x, 3) if isinstance(x, float) else x
print(json.dumps(rounded(out)))
PY
