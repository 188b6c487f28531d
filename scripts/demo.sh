#!/usr/bin/env bash
# `make demo`: nginx in front of TorchServe serving the draw-a-digit page (deploy/nginx/), one
# real prediction through nginx, then the page's link. A TorchServe that already runs here and
# answers (`make serve`'s) is reused as it is: same key, nothing restarted, so requests in flight
# and links already handed out keep working; one is started as `make serve` starts it only when
# none answers.
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
  if python3 container/healthcheck.py --all-workers >/dev/null 2>&1; then
    echo "[demo] TorchServe is already running and answering: reusing it (same key, nothing restarted)"
  else
    scripts/start.sh
  fi
  python deploy/nginx/proxy.py start --listen "$listen"
  SMOKE_URL="http://$listen" scripts/smoke.sh
fi
echo "[demo] open http://$listen/#key=$(scripts/token.sh)   (make stop stops TorchServe and nginx)"
