#!/usr/bin/env bash
# .venv-kserve-runtime: a stand-in for KServe's stock TorchServe runtime image
# (pytorch/torchserve-kfs:0.12.0-gpu), which cannot be pulled here: its Python (3.9) and its
# Python packages (deploy/kserve/runtime-requirements.txt), in one virtualenv as in the image.
# tests/test_kserve_pod.py runs the pod from it. Also model-wheels/ in it: the packages the
# archive's requirements add on Python 3.9 (config/archive-requirements.txt), the index the test's
# pod installs them from.
#
# Wheels are kept in KSERVE_RUNTIME_CACHE (default ~/.cache/mnist-kserve-runtime), outside the
# repository: a warm cache installs without the network. PYTHON39: the interpreter (default
# python3.9 on PATH, else the newest 3.9 pyenv has).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-kserve-runtime
requirements=deploy/kserve/runtime-requirements.txt
archive_requirements=config/archive-requirements.txt
cache=${KSERVE_RUNTIME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnist-kserve-runtime}

is_python39() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null; }
python=${PYTHON39:-}
if [ -z "$python" ]; then   # a pyenv shim may be on PATH and still not run: try each
  for candidate in python3.9 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9.*/bin/python 2>/dev/null | sort -rV); do
    if is_python39 "$candidate"; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ] || ! is_python39 "$python"; then
  echo "[kserve-runtime] needs Python 3.9, the runtime image's: install it (pyenv install 3.9) or set PYTHON39" >&2
  exit 1
fi

# Every wheel into the cache (pip skips those already there), then install from the cache alone.
fetch() {   # fetch DIR REQUIREMENTS: make DIR hold every wheel REQUIREMENTS needs on Python 3.9
  "$venv/bin/python" -m pip download --quiet --no-index --find-links "$1" -d "$1" -r "$2" >/dev/null 2>&1 ||
    "$venv/bin/python" -m pip download --quiet -d "$1" -r "$2"
}
rm -rf "$venv"
"$python" -m venv "$venv"
mkdir -p "$cache/wheels" "$cache/model-wheels"
fetch "$cache/wheels" "$requirements"
"$venv/bin/python" -m pip install --quiet --no-compile --no-index --find-links "$cache/wheels" -r "$requirements"
fetch "$cache/model-wheels" "$archive_requirements"
cp -r "$cache/model-wheels" "$venv/model-wheels"

if "$venv/bin/python" -c 'import scipy' 2>/dev/null; then
  echo "[kserve-runtime] scipy is installed, the runtime image has none: $requirements brings it" >&2
  exit 1
fi
echo "[kserve-runtime] $venv ready: $("$venv/bin/python" -c 'import sys
from importlib.metadata import version
print("Python", sys.version.split()[0], *(f"{name} {version(name)}" for name in ("torch", "numpy", "torchserve", "kserve")))')"
