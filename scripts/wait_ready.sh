#!/usr/bin/env bash
# Wait (at most $1 seconds) until the management API reports every mnist worker READY.
# MANAGEMENT_URL and KEY_FILE (absolute) point it at another server than `make serve`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEY_FILE=${KEY_FILE:-$PWD/key_file.json}
management=${MANAGEMENT_URL:-http://127.0.0.1:8081}
all_ready='import json, sys
workers = json.load(sys.stdin)[0]["workers"]
sys.exit(0 if workers and all(w["status"] == "READY" for w in workers) else 1)'
deadline=$(( $(date +%s) + ${1:-60} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ -f "$KEY_FILE" ] &&
     curl -sf -m 2 -H "Authorization: Bearer $(scripts/token.sh management)" "$management/models/mnist" 2>/dev/null |
       python3 -c "$all_ready" 2>/dev/null; then
    exit 0
  fi
  sleep 0.2
done
echo "[wait] the model did not become READY within ${1:-60}s; see the logs/ folder beside $KEY_FILE" >&2
exit 1
