#!/usr/bin/env bash
# Stop the TorchServe started from this shell's TMPDIR (safe when none is running).
set -euo pipefail
echo "[stop] $(torchserve --stop 2>&1 | tail -n 1)"
