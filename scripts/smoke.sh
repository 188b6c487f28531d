#!/usr/bin/env bash
# One real prediction over HTTP: an MNIST test digit, sent as a PNG to the running server
# (or to SMOKE_URL, e.g. nginx in front of it), printed with the curl command to repeat it.
set -euo pipefail
cd "$(dirname "$0")/.."
digit=${1:-artifacts/samples/test00000-digit7.png}
[ -f "$digit" ] || python -m scripts.sample_digits --count 10 >/dev/null
command="curl -s -H 'Authorization: Bearer $(scripts/token.sh)' -H 'Content-Type: image/png' \
--data-binary @$digit ${SMOKE_URL:-http://127.0.0.1:8080}/predictions/mnist"
echo "[smoke] $command"
answer=$(eval "$command")
echo "$answer"
expected=$(basename "$digit" .png | sed -n 's/.*digit\([0-9]\)$/\1/p')
got=$(echo "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["digit"])')
if [ -n "$expected" ] && [ "$got" != "$expected" ]; then
  echo "[smoke] FAILED: expected digit $expected, got $got" >&2
  exit 1
fi
echo "[smoke] predicted $got for $digit: OK"
