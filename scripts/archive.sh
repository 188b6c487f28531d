#!/usr/bin/env bash
# Pack model_store/mnist.mar: the LeNet-5 file, its state_dict, training metrics and MNIST's digit means, the
# handler, the shared preprocessing package, config/model-config.yaml, and
# config/archive-requirements.txt (what a server that installs packages per model adds: the KServe
# runtime's scipy). Self-contained: it needs nothing from this repository at serving time.
set -euo pipefail
cd "$(dirname "$0")/.."
weights=${WEIGHTS:-artifacts/lenet5_mnist.pt}
metrics=$(dirname "$weights")/metrics.json   # training's record; the handler reads its temperature
for file in "$weights" "$metrics"; do
  [ -f "$file" ] || { echo "[archive] no $file: run 'make train' first" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/model" "$stage/handler"
cp model/*.py "$stage/model/"       # the packages the handler imports, without caches
cp handler/*.py "$stage/handler/"
cp "$metrics" "$stage/"
python -m training.digit_means "$stage/digit_means.npy"   # the baselines of "why not" explanations

export_path=${EXPORT_PATH:-model_store}   # the benchmark packs variants elsewhere
mkdir -p "$export_path"
torch-model-archiver --force \
  --model-name mnist \
  --version "${MODEL_VERSION:-1.0}" \
  --model-file model/lenet5.py \
  --serialized-file "$weights" \
  --handler handler/digit_handler.py \
  --extra-files "$stage" \
  --config-file "${MODEL_CONFIG:-config/model-config.yaml}" \
  --requirements-file config/archive-requirements.txt \
  --export-path "$export_path"
echo "[archive] wrote $export_path/mnist.mar ($(du -k "$export_path/mnist.mar" | cut -f1) KiB)"
