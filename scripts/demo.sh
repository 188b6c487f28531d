#!/usr/bin/env bash
# `make demo`: TorchServe started as `make serve` starts it, nginx in front of it serving the
# draw-a-digit page (deploy/nginx/), one real prediction through nginx, then the page's link.
# The link carries the inference key in its fragment, which browsers never send to a server;
# the page keeps it for its tab only. `scripts/demo.sh link` renews the key (TorchServe's keys
# expire) and prints a fresh link. DEMO_LISTEN moves nginx off 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
listen=${DEMO_LISTEN:-127.0.0.1:8000}

if [ "${1:-}" = link ]; then
  curl -sf -X POST -H "Authorization: Bearer $(scripts/token.sh API)" \
    "${MANAGEMENT_URL:-http://127.0.0.1:8081}/token?type=inference" >/dev/null ||
    { echo "[demo] TorchServe did not renew the key: is it running? ('make demo' starts it)" >&2; exit 1; }
else
  scripts/start.sh
  python deploy/nginx/proxy.py start --listen "$listen"
  SMOKE_URL="http://$listen" scripts/smoke.sh
fi
echo "[demo] open http://$listen/#key=$(scripts/token.sh)   (make stop stops TorchServe and nginx)"
