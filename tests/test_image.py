"""The serving image, built by a real Docker engine and run with no network (`make image-test`).

Part of `make test`; IMAGE_TEST=0 skips it where no Docker engine can be had (the build takes
minutes, 6 GB of disk and a Docker engine, or Debian's docker.io, whose dockerd harness/docker.py
starts, as root). docs/container.md gives its cost. It builds with a CA bundle as a build secret
(CA_BUNDLE=file, by default the system's) and checks that no layer holds it.
"""
import os
import time
from pathlib import Path

import numpy as np
import pytest

from configuration import REPO
from harness import docker
from model.preprocess import INPUT_SIZE
from training.user_styles import mnist_png

pytestmark = pytest.mark.skipif(os.environ.get("IMAGE_TEST") == "0",
                                reason="IMAGE_TEST=0: the image is not built")
# The host's own CA bundle by default (behind a TLS-intercepting proxy it holds the proxy's CA), so
# the secret's path and the search of every layer for it run wherever the image is tested.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE = os.environ.get("CA_BUNDLE") or (str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else None)


@pytest.fixture(scope="module")
def engine():
    with docker.engine() as cli:   # on leaving: the host's forwarding and firewall as they were
        yield cli


@pytest.fixture(scope="module")
def image(engine):
    docker.build_image(CA_BUNDLE)
    return docker.IMAGE


@pytest.fixture(scope="module")
def container(engine, image):
    with docker.running(engine, image) as running:
        started = time.monotonic()
        running.wait_healthy()
        print(f"[image] started, health {running.health()['Status']} after {time.monotonic() - started:.0f} s")
        yield running


def test_healthcheck_turns_healthy(container):
    health = container.health()
    assert health["Status"] == "healthy", f"{health}\n{container.logs()}"
    assert health["Log"][-1]["Output"].startswith("healthy: ")


def test_predicts_a_test_digit(container, test_set):
    images, labels = test_set
    status, answer = container.post("predictions/mnist", mnist_png(images[0]))
    assert status == 200, answer
    assert answer["digit"] == labels[0]


def test_explains_a_test_digit(container, test_set):
    images, labels = test_set
    status, answer = container.post("explanations/mnist", mnist_png(images[0]))
    assert status == 200, answer
    assert answer["target"] == labels[0]
    assert np.array(answer["attributions"]).shape == (INPUT_SIZE, INPUT_SIZE)
    assert np.abs(answer["attributions"]).sum() > 0


def test_refuses_a_bad_image(container):
    status, answer = container.post("predictions/mnist", b"this is not an image")
    assert status == 400, answer


def test_serves_as_a_user_that_is_not_root(container):
    assert container.main_process_uid() != 0


def test_ca_bundle_is_in_no_layer(engine, image):
    """The bundle was a build secret: no file of any layer has its bytes, no history line its text."""
    if CA_BUNDLE is None:
        pytest.skip("built without CA_BUNDLE")
    history = docker.run(engine, "history", "--no-trunc", image, check=True).stdout
    assert "BEGIN CERTIFICATE" not in history
    # config.properties, which the image copies, is found the same way: the search can find.
    found = docker.layer_files_holding(engine, {"bundle": Path(CA_BUNDLE).read_bytes(),
                                                "config": (REPO / "config/config.properties").read_bytes()}, image)
    assert found["bundle"] == []
    assert [path.split(":")[1] for path in found["config"]] == ["home/model-server/config/config.properties"]


def test_docker_stop_ends_it_cleanly_within_the_grace_period(container):
    """Runs last: SIGTERM stops TorchServe; Docker would SIGKILL it after 10 s (exit 137)."""
    seconds, exit_code = container.stop()
    print(f"[image] docker stop: {seconds:.1f} s, exit code {exit_code}")
    assert exit_code == 0, container.logs()
    assert seconds < 10
