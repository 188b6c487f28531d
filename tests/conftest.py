"""Shared fixtures: the real MNIST, the trained weights, and one real TorchServe.

The server is started once per test run from a fresh temporary directory holding only
the built `model_store/mnist.mar` and our `config/` files (ports moved to free ones), with
its own TMPDIR and no PYTHONPATH: it proves the archive runs without the repository.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import torch
from PIL import Image

from model.preprocess import normalize_digit, to_model_input
from harness.worker import Worker
from tests.proxy import Proxy, start_proxy, stop_proxy
from training.data import ensure_mnist, load_raw
from training.evaluate import load_model

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "artifacts" / "lenet5_mnist.pt"
ARCHIVE = REPO / "model_store" / "mnist.mar"


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
    temperature = json.loads(WEIGHTS.with_name("metrics.json").read_text())["temperature"]

    def probabilities(images: np.ndarray) -> np.ndarray:
        digits = torch.from_numpy(np.stack([normalize_digit(Image.fromarray(a)) for a in images]))
        with torch.inference_mode():
            return torch.softmax(trained_model(to_model_input(digits)) / temperature, dim=1).numpy()
    return probabilities


@pytest.fixture(scope="session")
def worker(tmp_path_factory) -> Worker:
    """The archive's handler run in-process by TorchServe's own worker code (harness/worker.py)."""
    if not ARCHIVE.exists():
        pytest.fail(f"{ARCHIVE} is missing: run `make test`, which builds it first")
    return Worker(ARCHIVE, tmp_path_factory.mktemp("worker"), REPO / "config" / "metrics.yaml")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_server_config(dest: Path, ports: dict, overrides: dict | None = None) -> Path:
    """config/config.properties with its addresses moved to `ports` and `overrides` applied."""
    settings = {
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_port": str(ports["grpc_inference"]),
        "grpc_management_port": str(ports["grpc_management"]),
        **(overrides or {}),
    }
    lines = []
    for line in (REPO / "config" / "config.properties").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={settings.pop(key)}" if key in settings else line)
    lines += [f"{key}={value}" for key, value in settings.items()]
    dest.write_text("\n".join(lines) + "\n")
    return dest


@dataclass
class Server:
    """A running TorchServe: its URLs, keys and working directory."""

    workdir: Path
    inference: str
    management: str
    metrics: str
    env: dict

    def key(self, kind: str = "inference") -> str:
        return json.loads((self.workdir / "key_file.json").read_text())[kind]["key"]

    def predict(self, body, content_type: str = "image/png", token: str | None = None,
                endpoint: str = "predictions", **kwargs):
        headers = {"Authorization": f"Bearer {token or self.key()}"}
        if content_type:
            headers["Content-Type"] = content_type
        return requests.post(f"{self.inference}/{endpoint}/mnist", data=body, headers=headers,
                             timeout=30, **kwargs)

    def processes(self) -> tuple[psutil.Process, list[psutil.Process]]:
        """The Java frontend (its pid file is in this server's TMPDIR) and its Python workers."""
        frontend = psutil.Process(int((self.workdir / "tmp" / ".model_server.pid").read_text()))
        workers = [p for p in frontend.children() if "model_service_worker" in " ".join(p.cmdline())]
        return frontend, workers

    def log(self, name: str = "model_log.log") -> str:
        path = self.workdir / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""


def start_server(workdir: Path, start_command: list[str], extra_env: dict | None = None,
                 overrides: dict | None = None) -> Server:
    """Start TorchServe in `workdir` (which holds config/ and model_store/) and wait until READY;
    `overrides` are config.properties settings (e.g. service_envelope) on top of ours."""
    ports = dict(zip(["inference", "management", "metrics", "grpc_inference", "grpc_management"], free_ports(5)))
    write_server_config(workdir / "config" / "config.properties", ports, overrides)
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TMPDIR=str(tmp), **(extra_env or {}))
    subprocess.run(start_command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    server = Server(workdir, f"http://127.0.0.1:{ports['inference']}", f"http://127.0.0.1:{ports['management']}",
                    f"http://127.0.0.1:{ports['metrics']}", env)
    wait = subprocess.run([str(REPO / "scripts" / "wait_ready.sh"), "90"], env={
        **env, "KEY_FILE": str(workdir / "key_file.json"), "MANAGEMENT_URL": server.management})
    if wait.returncode != 0:
        stop_server(server)
        pytest.fail("TorchServe did not get the model READY:\n" + server.log()[-3000:])
    return server


def stop_server(server: Server) -> None:
    subprocess.run(["torchserve", "--stop"], cwd=server.workdir, env=server.env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)


def serving_directory(archive: Path = ARCHIVE) -> Path:
    """A fresh temporary directory holding only the archive and the serving config files."""
    workdir = Path(tempfile.mkdtemp(prefix="mnist-serve-"))
    (workdir / "model_store").mkdir()
    shutil.copy(archive, workdir / "model_store" / "mnist.mar")
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "config" / "training.yaml").unlink()
    return workdir


START = ["torchserve", "--start", "--ncs", "--ts-config", "config/config.properties"]


@pytest.fixture(scope="session")
def server() -> Server:
    if not ARCHIVE.exists():
        pytest.fail(f"{ARCHIVE} is missing: run `make test`, which builds it first")
    workdir = serving_directory()
    running = start_server(workdir, START)
    yield running
    stop_server(running)
    shutil.rmtree(workdir, ignore_errors=True)


# --- the web page: nginx in front of the session's TorchServe ---------------------------------

@pytest.fixture(scope="session")
def proxy(server) -> Proxy:
    """nginx serving web/ and proxying the API to `server`, with the settings `make demo` uses."""
    running = start_proxy(server.workdir / "config" / "config.properties", free_ports(1)[0])
    yield running
    stop_proxy(running)
