#!/usr/bin/env bash
# `make bench` / `make bench-sweep`: install hey when missing, then run scripts/bench.py or the
# module named as the argument (see their docstrings).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v hey >/dev/null; then
  echo "[bench] installing hey (Debian package)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq hey >/dev/null
fi
python -m "${1:-scripts.bench}"
