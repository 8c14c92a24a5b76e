#!/usr/bin/env bash
# Installs what framecache's build needs beyond cargo, when missing (Debian: apt-get).
# Today: the libjpeg-turbo headers that the fast JPEG encoder links against.
set -euo pipefail
if [ ! -f /usr/include/jpeglib.h ] && ! pkg-config --exists libjpeg 2>/dev/null; then
  echo "[setup] installing libjpeg-turbo development files" >&2
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libjpeg62-turbo-dev >&2
fi
