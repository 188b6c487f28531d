#!/usr/bin/env bash
# `make bench`: install hey when missing, then run scripts/bench.py (see its docstring).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v hey >/dev/null; then
  echo "[bench] installing hey (Debian package)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq hey >/dev/null
fi
python -m scripts.bench
