#!/usr/bin/env bash
# Runs the Python package's pytest suite against the wheel users install: builds it once
# (scripts/wheel.sh, cached by a hash of the sources) and installs it into framecache's
# virtualenv, replacing whatever was there. The S3 cases use the server the environment
# names (AWS_ENDPOINT_URL, ... and FRAMECACHE_TEST_S3, as `scripts/garage.sh start DIR`
# writes them to DIR/env); without one they are skipped, or fail when CI is set. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(scripts/python-env.sh)
wheel=$(scripts/wheel.sh)
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel" >&2
FRAMECACHE_WHEEL="$wheel" exec "$venv/bin/python" -m pytest python/tests -q -p no:cacheprovider "$@"
