#!/usr/bin/env bash
# Create .venv with the pinned requirements and install the system packages the project runs on.
set -euo pipefail
cd "$(dirname "$0")/.."

java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }

# System packages from Debian: Java 17 (TorchServe's frontend); nginx in front of TorchServe
# (`make demo`), with njs for its check of form bodies (deploy/nginx/guard.js), and Chromium for the page's browser tests (tests/test_web.py); Prometheus and
# promtool (deploy/prometheus/: `make monitor`, and `make test` checks the rules and scrapes a
# real server with it).
packages=()
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then packages+=(openjdk-17-jre-headless); fi
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || packages+=(libnginx-mod-http-js)
[ -x /usr/bin/chromium ] || packages+=(chromium)
lean=()   # installed without their recommendations (Prometheus recommends its node exporter)
{ command -v prometheus && command -v promtool; } >/dev/null || lean+=(prometheus)
# tests/test_image.py (skipped with IMAGE_TEST=0): Docker's engine with BuildKit built in, and
# debootstrap for the image's base where no registry is reachable (docs/container.md).
if [ "${IMAGE_TEST:-}" != 0 ]; then
  command -v dockerd >/dev/null || lean+=(docker.io)
  command -v debootstrap >/dev/null || lean+=(debootstrap)
fi
if [ $(( ${#packages[@]} + ${#lean[@]} )) -gt 0 ]; then
  echo "[setup] installing ${packages[*]} ${lean[*]} (Debian packages)"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  [ ${#packages[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${packages[@]}" >/dev/null
  [ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
  # Where systemd runs, the package starts a system Prometheus on :9090, the port `make monitor` uses.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo_cmd systemctl disable --now prometheus
  fi
fi

# KServe (deploy/kserve/): the KServe model server of KServe's TorchServe runtime image, which
# tests/test_kserve_pod.py runs beside TorchServe as the pod does. A virtualenv of its own:
# kserve 0.13 pins numpy 1.x, fastapi, uvicorn and ray, which must not move .venv's pins.
# --no-compile: most of what it installs (the Kubernetes client's models, most of ray) is never imported.
# Installed beside .venv, at the same time: both mostly wait on downloads.
[ -x .venv-kserve/bin/python ] || python3 -m venv .venv-kserve
.venv-kserve/bin/python -m pip install --quiet --no-compile --disable-pip-version-check \
    -r deploy/kserve/requirements.txt &
kserve_install=$!

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# Bench-only (`make bench`'s plain-Python reference), never in the image.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
echo "[setup] .venv ready: $(.venv/bin/python -c 'import torch, ts; print("torch", torch.__version__, "torchserve", ts.__version__)')"
wait "$kserve_install"
echo "[setup] .venv-kserve ready: kserve $(.venv-kserve/bin/python -c 'from importlib.metadata import version; print(version("kserve"))')"

