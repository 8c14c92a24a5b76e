#!/usr/bin/env bash
# Installs and runs Garage, a production S3-compatible server, on loopback for framecache's
# tests and benchmarks.
#
#   scripts/garage.sh install        install Garage (once; reused while its version matches)
#   scripts/garage.sh start DIR      start a single-node server with its state in DIR; writes
#                                    DIR/env (source it for AWS_* and FRAMECACHE_TEST_S3;
#                                    GARAGE_METRICS_URL counts the requests that reached it)
#   scripts/garage.sh stop DIR       stop the server started in DIR (and only that one)
set -euo pipefail

GARAGE_VERSION=2.5.0
TOOLS="${FRAMECACHE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/framecache-tools}"
GARAGE="$TOOLS/bin/garage"
BUCKET="${S3_BUCKET:-mpr}"
REGION=us-east-1

log() { printf '[garage] %s\n' "$*" >&2; }

install() {
  if [ -x "$GARAGE" ] && "$GARAGE" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    return 0
  fi
  log "installing Garage $GARAGE_VERSION into $TOOLS (about 17 minutes on 2 cores, once)"
  cargo install garage --version "$GARAGE_VERSION" --locked --root "$TOOLS" >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rand_hex() { # $1 bytes
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

start() {
  local dir="$1"
  install
  mkdir -p "$dir/meta" "$dir/data"
  local port rpc_port key secret
  port=$(free_port)
  rpc_port=$(free_port)
  admin_port=$(free_port)
  key="GK$(rand_hex 12)"
  secret="$(rand_hex 32)"
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
  GARAGE_DEFAULT_ACCESS_KEY="$key" GARAGE_DEFAULT_SECRET_KEY="$secret" \
    GARAGE_DEFAULT_BUCKET="$BUCKET" RUST_LOG="${GARAGE_LOG:-warn}" \
    setsid "$GARAGE" -c "$dir/garage.toml" server --single-node --default-bucket \
    > "$dir/garage.log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  local endpoint="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null --aws-sigv4 "aws:amz:$REGION:s3" --user "$key:$secret" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$endpoint/$BUCKET?list-type=2&max-keys=1"; then
      cat > "$dir/env" <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_REGION=$REGION
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export S3_BUCKET=$BUCKET
export FRAMECACHE_TEST_S3=1
export GARAGE_METRICS_URL=http://127.0.0.1:$admin_port/metrics
ENV
      log "ready at $endpoint (bucket $BUCKET, state in $dir)"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "Garage exited during start-up:"; tail -20 "$dir/garage.log" >&2; return 1
    fi
    sleep 0.2
  done
  log "Garage did not answer within 60 s:"; tail -20 "$dir/garage.log" >&2
  stop "$dir"; return 1
}

stop() {
  local dir="$1" pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?usage: garage.sh start DIR}" ;;
  stop) stop "${2:?usage: garage.sh stop DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
