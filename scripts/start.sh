#!/usr/bin/env bash
# Start TorchServe with config/config.properties, config/log4j2.xml and model_store/mnist.mar,
# from the repository root (key_file.json and logs/ land there), and wait until every worker is
# READY and the model answers (scripts/wait_ready.sh). Safe to run twice: a server started from
# this shell's TMPDIR is stopped first.
#
# Worker sockets: TorchServe puts them in $TEMP (/tmp when unset) as .ts.sock.9000, .9001, ...,
# the same names for every server, so a second server on the machine would take over this one's
# sockets. This server gets its own folder, one per TMPDIR as TorchServe's pid file is (and so
# one per `make serve`); the pid file stays in TMPDIR, where `torchserve --stop` looks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f model_store/mnist.mar ] || { echo "[start] model_store/mnist.mar is missing: run 'make archive'" >&2; exit 1; }
scripts/stop.sh

export TMPDIR=${TMPDIR:-/tmp} TEMP=${TMPDIR:-/tmp}/mnist-torchserve-$(id -u)
mkdir -p -m 0700 "$TEMP"
# One mnist worker per CPU this server may use (container/usable_cpus.py: its affinity, capped by its
# cgroup's CPU quota), unless the caller chose; its heavy lane's one is set in config.properties (models=). Left to itself TorchServe would start one per GPU
# where it sees GPUs, leaving the CPU-side normalizer short of workers (docs/performance.md, "Workers").
export TS_DEFAULT_WORKERS_PER_MODEL=${TS_DEFAULT_WORKERS_PER_MODEL:-$(python3 container/usable_cpus.py)}
started_ms=$(date +%s%3N)
mkdir -p logs   # the server inherits these streams: never leave it holding the caller's pipe
# Without PYTHONPATH (the Makefile exports the repository on it): TorchServe would put it ahead
# of the extracted archive on its workers' path, and they would import this checkout's handler
# and model packages instead of the archive's.
env -u PYTHONPATH torchserve --start --ncs --ts-config config/config.properties --log-config config/log4j2.xml \
  >logs/torchserve_console.log 2>&1
scripts/wait_ready.sh "${READY_TIMEOUT:-120}"
echo "[start] TorchServe up, every worker READY ($TS_DEFAULT_WORKERS_PER_MODEL per model where config.properties' models= sets none)" \
  "and answering $(( $(date +%s%3N) - started_ms )) ms after start" \
  "(logs in logs/, key in key_file.json, worker sockets in $TEMP)"
