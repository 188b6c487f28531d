"""Shared fixtures: the real MNIST, the trained weights, and one real TorchServe.

The server is started once per test run by harness/server.py: from a fresh temporary directory
holding only the built `model_store/mnist.mar` and our serving config (ports moved to free
ones), with its own TMPDIR and TEMP and no PYTHONPATH: it proves the archive runs without the
repository. Tests that start servers of their own use harness/server.py directly.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.kserve import DIGITS
from harness.server import ARCHIVE, REPO, WEIGHTS, Server, free_ports, serving
from harness.worker import Worker
from model.inference import load_model, probabilities, served_temperature
from model.preprocess import prepare, to_model_input
from tests.proxy import Proxy, start_proxy, stop_proxy
from training.data import ensure_mnist, load_raw
from training.user_styles import mnist_png


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return ensure_mnist(REPO / "data")


@pytest.fixture(scope="session")
def test_set(mnist_root) -> tuple[np.ndarray, np.ndarray]:
    """The raw MNIST test images (uint8, 10000 x 28 x 28) and labels."""
    images, labels = load_raw(mnist_root, train=False)
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="session")
def trained_model():
    if not WEIGHTS.exists():
        pytest.fail(f"{WEIGHTS} is missing: run `make test`, which trains it first")
    return load_model(str(WEIGHTS))


@pytest.fixture(scope="session")
def in_process(trained_model):
    """The served probabilities of raw 28x28 digits, computed here: serving preprocessing, the
    trained model and the softmax temperature training recorded."""
    temperature = served_temperature(WEIGHTS)

    def answers(images: np.ndarray) -> np.ndarray:
        digits = torch.from_numpy(np.stack([prepare(Image.fromarray(a)) for a in images]))
        with torch.inference_mode():
            return probabilities(trained_model, to_model_input(digits), temperature).numpy()
    return answers


@pytest.fixture(scope="session")
def worker(tmp_path_factory) -> Worker:
    """The archive's handler run in-process by TorchServe's own worker code (harness/worker.py)."""
    if not ARCHIVE.exists():
        pytest.fail(f"{ARCHIVE} is missing: run `make test`, which builds it first")
    return Worker(ARCHIVE, tmp_path_factory.mktemp("worker"))


@pytest.fixture(scope="session")
def server() -> Server:
    if not ARCHIVE.exists():
        pytest.fail(f"{ARCHIVE} is missing: run `make test`, which builds it first")
    with serving() as running:
        yield running


@pytest.fixture(scope="session")
def plain_answers(server, test_set) -> list[dict]:
    """The plain API's answers for the first DIGITS test digits, sent as PNG bodies: what the
    KServe tests (tests/test_kserve.py, tests/test_kserve_pod.py) must answer for them."""
    return [server.predict(mnist_png(image)).json() for image in test_set[0][:DIGITS]]


# --- the web page: nginx in front of the session's TorchServe ---------------------------------

@pytest.fixture(scope="session")
def proxy(server) -> Proxy:
    """nginx serving web/ and proxying the API to `server`, with the settings `make demo` uses."""
    running = start_proxy(server.workdir / "config" / "config.properties", free_ports(1)[0])
    yield running
    stop_proxy(running)
