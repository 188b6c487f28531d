#!/usr/bin/env bash
# Print one of TorchServe's keys: inference (default), management or api (any case).
# They come from $KEY_FILE, by default the key_file.json that `make serve` (scripts/start.sh)
# makes TorchServe write in the repository root, so this works from any folder.
# The inference and management keys expire (token_expiration_min); after a renewal
# (POST /token) TorchServe rewrites the file: run this again for the new key.
set -euo pipefail
KEY_FILE=${KEY_FILE:-$(cd "$(dirname "$0")/.." && pwd)/key_file.json}
python3 - "${1:-inference}" "$KEY_FILE" <<'EOF'
import json
import sys

wanted, path = sys.argv[1], sys.argv[2]
try:
    with open(path) as file:
        keys = json.load(file)
except FileNotFoundError:
    sys.exit(f"[token] {path} does not exist: no server started there is running (start one with `make serve`)")
except (OSError, ValueError) as error:
    sys.exit(f"[token] cannot read {path}: {error}")
by_name = {name.lower(): entry for name, entry in keys.items()}
if wanted.lower() not in by_name:
    sys.exit(f"[token] no key named {wanted!r} in {path}; it holds: {', '.join(keys)}")
print(by_name[wanted.lower()]["key"])
EOF
