# Every target does its own prerequisites and is safe to run again.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTHONPATH := $(CURDIR)

WEIGHTS := artifacts/lenet5_mnist.pt
METRICS := artifacts/metrics.json
MAR := model_store/mnist.mar
SOURCES := $(wildcard model/*.py) $(wildcard handler/*.py) config/model-config.yaml scripts/archive.sh

.PHONY: setup data train evaluate archive serve stop smoke test bench image

setup: .venv/.installed                       ## .venv with the pinned requirements, Java 17
.venv/.installed: requirements.txt scripts/setup.sh
	scripts/setup.sh
	touch $@

data: setup                                   ## MNIST in data/, verified, normalized digits cached
	python -m training.data data

train: data                                   ## train with config/training.yaml (always retrains)
	python -m training.train

$(WEIGHTS) $(METRICS) &: | setup             ## train only when no weights exist
	python -m training.train

evaluate: $(WEIGHTS)                          ## test accuracy of the weights, serving preprocessing
	python -m training.evaluate $(WEIGHTS)

archive: $(MAR)                               ## model_store/mnist.mar
$(MAR): $(WEIGHTS) $(METRICS) $(SOURCES) | setup
	scripts/archive.sh

serve: archive                                ## the main job: start TorchServe, one real prediction
	scripts/start.sh
	scripts/smoke.sh

smoke: setup
	scripts/smoke.sh

stop: setup                                   ## stop the server `make serve` started
	scripts/stop.sh

test: archive                                 ## unit and integration tests (a real TorchServe)
	python -m pytest -q tests

bench: archive                                ## load test, see docs/performance.md
	scripts/bench.sh

image: archive                                ## the serving image (needs a Docker engine with BuildKit)
	docker build --build-arg REVISION=$$(git rev-parse HEAD) -t mnist-torchserve .
