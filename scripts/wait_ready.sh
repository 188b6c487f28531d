#!/usr/bin/env bash
# Wait (at most $1 seconds, 60 by default) until every mnist worker is READY and the model
# answers a known digit right (container/healthcheck.py --all-workers). Run it in the folder
# TorchServe was started from; further arguments go to the health check (the config path).
set -euo pipefail
seconds=${1:-60}
shift || true
healthcheck="$(dirname "$0")/../container/healthcheck.py"
deadline=$(( $(date +%s) + seconds ))
until why=$(python3 "$healthcheck" --all-workers "$@" 2>&1); do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "[wait] the model did not become READY within ${seconds}s ($why); see logs/ in $PWD" >&2
    exit 1
  fi
  sleep 0.2
done
