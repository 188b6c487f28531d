#!/usr/bin/env bash
# Wait (at most $1 seconds) until the management API reports every mnist worker READY.
set -euo pipefail
cd "$(dirname "$0")/.."
deadline=$(( $(date +%s) + ${1:-60} ))
management=${MANAGEMENT_URL:-http://127.0.0.1:8081}
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ -f key_file.json ]; then
    key=$(scripts/token.sh management)
    status=$(curl -s -m 2 -H "Authorization: Bearer $key" "$management/models/mnist" 2>/dev/null || true)
    if echo "$status" | grep -q '"status": "READY"' && ! echo "$status" | grep -q '"status": "UNLOADING\|"status": "LOADING'; then
      exit 0
    fi
  fi
  sleep 0.2
done
echo "[wait] the model did not become READY within ${1:-60}s; see logs/model_log.log" >&2
exit 1
