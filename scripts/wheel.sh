#!/usr/bin/env bash
# Builds framecache's Python wheel and prints its path: one abi3 wheel (CPython >= 3.11) for
# manylinux, with the system's libjpeg-turbo inside, so that `pip install WHEEL` needs
# neither a Rust toolchain nor a C compiler nor libjpeg on the machine that installs it.
# maturin builds it (`--release --locked`) and its built-in auditwheel checks it against the
# manylinux policy and repairs it (`--auditwheel repair`): libjpeg, the one library outside
# the policy, is copied into `framecache.libs/` under a hashed name and the extension's
# RPATH points there (Debian's libjpeg.a is not position-independent, so it cannot be
# linked in statically).
#
# The wheel is cached outside the clone under a hash of everything it is built from
# (sources, lock file, toolchain, libjpeg), and so are the compiled dependencies: a rerun on
# the same sources prints the cached wheel at once, a source change rebuilds only the
# framecache crates.
#
#   wheel=$(scripts/wheel.sh)          # then: pip install "$wheel"
#   scripts/wheel.sh --out DIR         # also copies the wheel into DIR
set -euo pipefail
cd "$(dirname "$0")/.."

out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "usage: scripts/wheel.sh [--out DIR]" >&2; exit 2 ;;
  esac
done

log() { printf '[wheel] %s\n' "$*" >&2; }

scripts/setup.sh
if [ ! -f /usr/include/jpeglib.h ] && [ ! -f "/usr/include/$(uname -m)-linux-gnu/jpeglib.h" ]; then
  log "libjpeg headers not found: the wheel must link libjpeg-turbo (scripts/setup.sh installs it)"
  exit 1
fi
venv=$(scripts/python-env.sh)
tools="${FRAMECACHE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/framecache-tools}"

# What the wheel is built from. Generated files (maturin develop's extension module,
# bytecode) are left out.
inputs() {
  find Cargo.toml Cargo.lock build.rs csrc src python/Cargo.toml python/pyproject.toml \
    python/src python/framecache scripts/wheel.sh -type f \
    ! -name '*.so' ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum
  rustc -vV
  "$venv/bin/maturin" --version
  dpkg-query -W -f '${Package} ${Version}\n' 'libjpeg*-dev' 2>/dev/null || true
}
key=$(inputs | sha256sum | cut -c1-16)
cache="$tools/wheels/$key"

wheel=""
if [ -d "$cache" ]; then
  wheel=$(find "$cache" -maxdepth 1 -name 'framecache-*.whl' | head -1)
fi
if [ -n "$wheel" ]; then
  log "cached: $wheel"
else
  log "building (sources $key; the first build compiles every dependency, later ones only framecache)"
  build="$cache.partial"
  rm -rf "$build"
  mkdir -p "$build"
  start=$(date +%s)
  # maturin's repair rewrites the extension it links in place (libjpeg under its hashed
  # name): left there, a build whose change does not relink the extension (a change to the
  # command line only) would hand the repair an already repaired library, which it refuses.
  # Removed, the extension is linked again (seconds).
  rm -f "$tools/wheel-target/release/deps/lib_native.so" "$tools/wheel-target/release/lib_native.so"
  (
    cd python
    CARGO_TARGET_DIR="$tools/wheel-target" VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
      maturin build --release --locked --auditwheel repair \
      --interpreter "$venv/bin/python" --out "$build" >&2
  )
  wheel=$(find "$build" -maxdepth 1 -name 'framecache-*.whl' | head -1)
  case "$wheel" in
    *-cp311-abi3-manylinux*.whl) ;;
    *) log "not an abi3 manylinux wheel: ${wheel:-none built}"; exit 1 ;;
  esac
  rm -rf "$cache"
  mv "$build" "$cache"
  wheel="$cache/$(basename "$wheel")"
  log "built in $(($(date +%s) - start)) s: $wheel"
  # Keep the three newest wheels.
  find "$tools/wheels" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
    sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
fi

if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$wheel" "$out/"
  wheel="$out/$(basename "$wheel")"
fi
echo "$wheel"
