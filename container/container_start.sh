#!/usr/bin/env bash
# Container entrypoint: TorchServe in the foreground, serving model_store/mnist.mar with
# config/config.properties and config/log4j2.xml from the current directory
# (/home/model-server in the image). Inference and metrics listen on every interface
# (INFERENCE_PORT, METRICS_PORT; 8080 and 8082 by default); management and gRPC stay on
# 127.0.0.1 as config.properties says. The worker sockets go to a folder of this server's own,
# as with scripts/start.sh (outside the image).
set -euo pipefail
for file in model_store/mnist.mar config/config.properties config/log4j2.xml; do
  [ -f "$file" ] || { echo "[container] no $file in $PWD" >&2; exit 1; }
done
export TS_INFERENCE_ADDRESS="http://0.0.0.0:${INFERENCE_PORT:-8080}"
export TS_METRICS_ADDRESS="http://0.0.0.0:${METRICS_PORT:-8082}"
# One mnist worker per CPU the container may use (its --cpus or limits.cpu), as scripts/start.sh does;
# its heavy lane has one (config.properties, models=).
export TS_DEFAULT_WORKERS_PER_MODEL=${TS_DEFAULT_WORKERS_PER_MODEL:-$("$(dirname "$0")/usable_cpus.py")}
export TMPDIR=${TMPDIR:-/tmp} TEMP=${TMPDIR:-/tmp}/mnist-torchserve-$(id -u)
mkdir -p -m 0700 "$TEMP"

# `torchserve --foreground` is a Python launcher waiting on the Java frontend. Exec'd as the
# main process, a SIGTERM (`docker stop`) would kill only the launcher and orphan Java, or be
# ignored when it runs as PID 1. So this shell stays the main process and, on SIGTERM or
# SIGINT, stops TorchServe the documented way: SIGTERM to Java, which stops its workers.
stop() {
  echo "[container] stopping TorchServe"
  torchserve --stop --foreground
  wait "$launcher"
  exit 0
}
torchserve --foreground --ncs --ts-config config/config.properties --log-config config/log4j2.xml &
launcher=$!
trap stop TERM INT
wait "$launcher" || true   # gets past here only when TorchServe ended without being stopped
echo "[container] TorchServe exited without being stopped; see logs/" >&2
exit 1
