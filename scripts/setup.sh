#!/usr/bin/env bash
# Create .venv with the pinned requirements and make sure Java 17 (TorchServe's frontend) is here.
set -euo pipefail
cd "$(dirname "$0")/.."

java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  echo "[setup] installing Java 17 (openjdk-17-jre-headless) for TorchServe"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

# Prometheus and promtool (deploy/prometheus/: `make monitor`, and `make test` checks the rules
# and scrapes a real server with it).
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "[setup] installing Prometheus and promtool (Debian package prometheus)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Where systemd runs, the package starts a system Prometheus on :9090, the port `make monitor` uses.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo_cmd systemctl disable --now prometheus
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
echo "[setup] .venv ready: $(.venv/bin/python -c 'import torch, ts; print("torch", torch.__version__, "torchserve", ts.__version__)')"
