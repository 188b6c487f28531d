#!/usr/bin/env bash
# Start TorchServe with config/config.properties and model_store/mnist.mar, from the
# repository root (key_file.json and logs/ land there), and wait until the model is READY.
# Safe to run twice: a server already started from here is stopped first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f model_store/mnist.mar ] || { echo "[start] model_store/mnist.mar is missing: run 'make archive'" >&2; exit 1; }
scripts/stop.sh

started_ms=$(date +%s%3N)
mkdir -p logs   # the server inherits these streams: never leave it holding the caller's pipe
torchserve --start --ncs --ts-config config/config.properties >logs/torchserve_console.log 2>&1
scripts/wait_ready.sh "${READY_TIMEOUT:-60}"
echo "[start] TorchServe up, model READY $(( $(date +%s%3N) - started_ms )) ms after start" \
  "(logs in logs/, key in key_file.json)"
