#!/usr/bin/env bash
# Load benchmark of `framecache serve` against nginx serving the same JPEG files from disk,
# both on loopback, measured by wrk with the same connections, threads, duration and URL
# rotation. framecache serves from a warm cache (every frame in the memory tier); nginx from
# the page cache with sendfile.
#
#   scripts/bench_serve.sh [--frames 64] [--connections 64] [--threads 2] [--duration 10]
#                          [--rounds 3] [--serve-args "--no-sendfile"]
#
# Prints one line per run and a JSON summary: requests per second, p99 latency and the
# server's CPU time per request (user + system, from /proc; steadier than the rates on a
# shared machine) of each server, medians over the rounds, which alternate between the two
# servers; and the ratios.
# Needs wrk and nginx (Debian packages; installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

frames=64 connections=64 threads=2 duration=10 rounds=3 serve_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) frames=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --serve-args) serve_args=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh >&2
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk nginx >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/framecache-bench-serve.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked >&2
fc() {
  FRAMECACHE_BACKEND=fs FRAMECACHE_ROOT="$work/origin" FRAMECACHE_CACHE_DIR="$work/cache" \
    target/release/framecache "$@"
}

# The same JPEGs for both: synthesized 1280x720 frames at q85 (about 120 KB each), stored by
# framecache and exported as files for nginx.
fc demo --timeline bench --frames "$frames" --width 1280 --height 720 >&2
fc export bench "$work/www" >&2
chmod -R a+rX "$work/www"
avg=$(du -b "$work/www" | cut -f1)
echo "[bench] $frames frames, $((avg / frames)) bytes on average" >&2

# framecache serve on a free port; its first line names the address.
# shellcheck disable=SC2086
FRAMECACHE_BACKEND=fs FRAMECACHE_ROOT="$work/origin" FRAMECACHE_CACHE_DIR="$work/cache" \
  target/release/framecache serve --bind 127.0.0.1:0 $serve_args > "$work/serve.out" 2> "$work/serve.err" &
pids+=($!)
fc_pids=$!
for _ in $(seq 100); do
  grep -q "serving on" "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
fc_base=$(sed -n 's/^serving on //p' "$work/serve.out")
[ -n "$fc_base" ] || { cat "$work/serve.err" >&2; echo "framecache serve did not start" >&2; exit 1; }

# nginx on a free port, its own prefix, no access log, sendfile.
nginx_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  types { image/jpeg jpg; }
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/0.jpg" && break
  sleep 0.1
done
nginx_base="http://127.0.0.1:$nginx_port"
nginx_pids=$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')

# URL lists: framecache's versioned URLs from its index (as the viewer uses them), and the
# files for nginx. Each wrk request takes the next URL in turn.
curl -sf "$fc_base/v1/timelines/bench" | python3 -c '
import json, sys
for f in json.load(sys.stdin)["frames"]:
    print(f["url"])' > "$work/fc.paths"
seq 0 $((frames - 1)) | sed 's/$/.jpg/; s/^/\//' > "$work/nginx.paths"
for name in fc nginx; do
  {
    echo 'local paths = {}'
    while read -r p; do echo "paths[#paths + 1] = \"$p\""; done < "$work/$name.paths"
    echo 'local n = 0'
    echo 'request = function() n = n + 1; return wrk.format("GET", paths[(n % #paths) + 1]) end'
  } > "$work/$name.lua"
done

# Warm: every frame read once through framecache (now in its memory tier), and once from
# nginx (in the page cache). The bytes must be the same.
while read -r p; do curl -sf -o "$work/check.jpg" "$fc_base$p"; done < "$work/fc.paths"
cmp "$work/check.jpg" "$work/www/$((frames - 1)).jpg"
while read -r p; do curl -sf -o /dev/null "$nginx_base$p"; done < "$work/nginx.paths"

cpu_ticks() { # pids... -> user + system clock ticks so far
  local total=0 pid f
  for pid in "$@"; do read -r -a f < "/proc/$pid/stat"; total=$((total + f[13] + f[14])); done
  echo "$total"
}

run() { # name base pids... -> "rps p99_ms cpu_us_per_request"
  local name=$1 base=$2 before after
  shift 2
  before=$(cpu_ticks "$@")
  wrk -t "$threads" -c "$connections" -d "${duration}s" --latency -s "$work/$name.lua" "$base" \
    > "$work/$name.last"
  after=$(cpu_ticks "$@")
  python3 - "$work/$name.last" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"{errors.group(1)} error responses")
print(f"{rps} {p99} {ticks / hz / requests * 1e6:.1f}")
PY
}

results=()
for round in $(seq "$rounds"); do
  for name in fc nginx; do
    if [ "$name" = fc ]; then
      r=$(run fc "$fc_base" $fc_pids)
    else
      # shellcheck disable=SC2086
      r=$(run nginx "$nginx_base" $nginx_pids)
    fi
    echo "[bench] round $round $name: $(echo "$r" | awk '{printf "%.0f req/s, p99 %.2f ms, server CPU %.0f us/request", $1, $2, $3}')" >&2
    results+=("$name $r")
  done
done
served=$(curl -sf "$fc_base/metrics" | sed -n 's/^framecache_tier_hits_total{tier="\(.*\)"} \(.*\)$/\1=\2/p' | paste -sd, -)
echo "[bench] framecache tier hits: $served" >&2

printf '%s\n' "${results[@]}" > "$work/results"
python3 - "$work/results" "$frames" "$avg" "$connections" "$threads" "$duration" <<'PY'
import json, statistics, sys
frames, total, conns, threads, duration = (int(a) for a in sys.argv[2:])
runs = {}
for line in open(sys.argv[1]):
    name, rps, p99, cpu = line.split()
    runs.setdefault(name, []).append((float(rps), float(p99), float(cpu)))
med = {n: tuple(statistics.median(r[i] for r in v) for i in range(3)) for n, v in runs.items()}
print(json.dumps({
    "frames": frames, "avg_bytes": total // frames, "connections": conns, "threads": threads,
    "duration_s": duration, "rounds": len(runs["fc"]),
    "framecache": {"rps": round(med["fc"][0]), "p99_ms": round(med["fc"][1], 2),
                   "cpu_us_per_request": round(med["fc"][2], 1)},
    "nginx": {"rps": round(med["nginx"][0]), "p99_ms": round(med["nginx"][1], 2),
              "cpu_us_per_request": round(med["nginx"][2], 1)},
    "rps_ratio": round(med["fc"][0] / med["nginx"][0], 2),
    "p99_ratio": round(med["fc"][1] / med["nginx"][1], 2),
}))
PY
