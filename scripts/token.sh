#!/usr/bin/env bash
# Print TorchServe's inference (default) or management key from key_file.json ($KEY_FILE).
set -euo pipefail
python3 -c 'import json, sys; print(json.load(open(sys.argv[2]))[sys.argv[1]]["key"])' \
  "${1:-inference}" "${KEY_FILE:-key_file.json}"
