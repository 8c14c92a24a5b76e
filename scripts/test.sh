#!/usr/bin/env bash
# Runs every check of framecache: formatting, clippy, and all tests (Rust, then the Python
# package's pytest suite in a virtualenv it creates once), the S3 ones against a Garage
# server this script installs (once) and starts on loopback, and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/check-docs.sh
state=$(mktemp -d "${TMPDIR:-/tmp}/framecache-garage.XXXXXX")
cleanup() { scripts/garage.sh stop "$state"; rm -rf "$state"; }
trap cleanup EXIT
scripts/garage.sh start "$state"
# shellcheck disable=SC1091
source "$state/env"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
cargo test --all-targets --locked --no-fail-fast
scripts/test-python.sh
