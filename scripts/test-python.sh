#!/usr/bin/env bash
# Builds the Python package into framecache's virtualenv (incrementally, in the workspace's
# target/) and runs its pytest suite. The S3 cases use the server the environment names
# (AWS_ENDPOINT_URL, ... and FRAMECACHE_TEST_S3, as `scripts/garage.sh start DIR` writes them
# to DIR/env); without one they are skipped, or fail when CI is set. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(scripts/python-env.sh)
(
  cd python
  VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --locked --quiet >&2
)
exec "$venv/bin/python" -m pytest python/tests -q -p no:cacheprovider "$@"
