#!/usr/bin/env bash
# Stop the TorchServe started from this shell's TMPDIR (safe when none is running). TMPDIR
# defaults to /tmp as in scripts/start.sh, whatever TEMP says (TorchServe's launcher would
# otherwise look for its pid file in TEMP).
set -euo pipefail
export TMPDIR=${TMPDIR:-/tmp}
echo "[stop] $(torchserve --stop 2>&1 | tail -n 1)"
