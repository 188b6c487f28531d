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

# The draw-a-digit page: nginx in front of TorchServe (`make demo`), and Chromium for its
# browser tests (tests/test_web.py), both from Debian.
web_packages=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || web_packages+=(nginx-light)
[ -x /usr/bin/chromium ] || web_packages+=(chromium)
if [ ${#web_packages[@]} -gt 0 ]; then
  echo "[setup] installing ${web_packages[*]} for the web page"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${web_packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
echo "[setup] .venv ready: $(.venv/bin/python -c 'import torch, ts; print("torch", torch.__version__, "torchserve", ts.__version__)')"
