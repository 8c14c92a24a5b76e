#!/usr/bin/env bash
# Installs what framecache's build and tests need beyond cargo, when missing (Debian: apt-get):
# the libjpeg-turbo headers that the fast JPEG encoder links against, and Chromium for the
# viewer's browser test (tests/viewer.rs).
set -euo pipefail
missing=()
if [ ! -f /usr/include/jpeglib.h ] && ! pkg-config --exists libjpeg 2>/dev/null; then
  missing+=(libjpeg62-turbo-dev)
fi
if [ -z "${FRAMECACHE_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] installing ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >&2
fi
