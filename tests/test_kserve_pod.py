"""A kserve-torchserve pod, run as the runtime runs it: in a network namespace of its own (a
pod's), TorchServe started with the runtime's command line on the storage layout docs/kserve.md
builds, with deploy/kserve/config/config.properties unchanged but for where /mnt/models is, and
beside it the real KServe model server (kserve 0.13.0, the version the runtime image pins)
serving tests/kserve_wrapper.py, which forwards to TorchServe as the image's wrapper does.
Requests come from outside the namespace, to the pod's address, as the cluster's do; the probes
run inside it with the manifest's command.

Each pod runs in two Python environments: `kserve-runtime` (.venv-kserve-runtime, `make
kserve-runtime`), the runtime image's Python 3.9, torch 2.4 and the rest of its packages, which
cannot be pulled here; and `project`, this project's own (.venv and .venv-kserve, `make setup`)."""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import yaml

from harness.kserve import BAD_ROWS, DEPLOY, DIGITS, ROUTES, deploy_settings, png_row, post
from harness.netns import PrivateNetwork
from harness.server import ARCHIVE, READY_TIMEOUT_S, REPO, Server, own_temp_env, stop_server
from training.user_styles import mnist_png

MOUNT = "/mnt/models"   # where KServe puts the InferenceService's storageUri
# kserve-torchserve's container: its args, then the image's entrypoint starts the wrapper.
RUNTIME_START = ["torchserve", "--start", f"--model-store={MOUNT}/model-store",
                 f"--ts-config={MOUNT}/config/config.properties"]
ENVELOPES = {"v1": "kserve", "v2": "kservev2"}   # protocolVersion -> TS_SERVICE_ENVELOPE, as KServe sets it
DOCUMENTED_REQUESTS = {"v1": "request-v1.json", "v2": "request.json"}   # in deploy/kserve/
WRAPPER_PORTS = {"http": 8080, "grpc": 8081}     # fixed in the image's wrapper (KServe's defaults)
WRAPPER = REPO / "tests" / "kserve_wrapper.py"
RUNTIME_VENV = REPO / ".venv-kserve-runtime"


@dataclass(frozen=True)
class Environment:
    """Where a pod's Python comes from."""

    bin: Path                 # first on the container's PATH: torchserve (whose Python runs the
                              # workers and the per-model pip install) and the probes' python3
    kserve_python: Path       # runs KServe's model server
    package_index: Path | None  # where the per-model pip install finds packages (none: it may need none)
    built_by: str


ENVIRONMENTS = {
    # The runtime image in one virtualenv, as in the image; its model-wheels/ stands in for the
    # package index a pod reaches (config/archive-requirements.txt: scipy, the image's numpy).
    "kserve-runtime": Environment(RUNTIME_VENV / "bin", RUNTIME_VENV / "bin" / "python", RUNTIME_VENV / "model-wheels",
                                  "make kserve-runtime"),
    "project": Environment(REPO / ".venv" / "bin", REPO / ".venv-kserve" / "bin" / "python", None, "make setup"),
}
TORCHSERVE_PORTS = ["inference_address", "management_address", "metrics_address", "grpc_inference_port",
                    "grpc_management_port"]


def config_ports(settings: dict) -> dict[str, int]:
    """The port of each TorchServe listener the config sets."""
    return {key: urlsplit(settings[key]).port if "://" in settings[key] else int(settings[key])
            for key in TORCHSERVE_PORTS}


def test_no_torchserve_port_clashes_with_the_wrapper_or_another():
    """TorchServe starts first in the pod: a port the wrapper also binds makes the wrapper fail."""
    settings = deploy_settings()
    ports = config_ports(settings)
    assert not set(ports.values()) & set(WRAPPER_PORTS.values()), ports
    # Inference and management may share one address (TorchServe serves both on one listener),
    # any other two listeners may not share a port.
    listeners = {settings[key] if key.endswith("_address") else key: port for key, port in ports.items()}
    assert len(set(listeners.values())) == len(listeners), listeners


def test_the_manifest_scrapes_torchserve_metrics_one_way():
    manifest = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())
    annotations = manifest["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Serverless"   # scaleMetric concurrency is Knative's
    assert manifest["spec"]["predictor"]["scaleMetric"] == "concurrency"
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config_ports(deploy_settings())["metrics_address"]
    assert "serving.kserve.io/enable-prometheus-scraping" not in annotations   # would point at the queue-proxy


def container_env(protocol: str, environment: Environment) -> dict:
    """What the runtime's container adds to this environment: the envelope KServe sets, the
    environment's Python first on PATH, and pip's settings for TorchServe's per-model install
    (install_py_dep_per_model): the environment's package index only, no config file of this machine."""
    return {"TS_SERVICE_ENVELOPE": ENVELOPES[protocol], "PATH": f"{environment.bin}:{os.environ['PATH']}",
            "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(environment.package_index or "")}


def storage_layout(models: Path) -> None:
    """The storageUri folder docs/kserve.md builds, with /mnt/models moved to `models`."""
    (models / "model-store").mkdir(parents=True)
    (models / "config").mkdir()
    shutil.copy(ARCHIVE, models / "model-store" / "mnist.mar")
    shutil.copy(REPO / "container" / "healthcheck.py", models / "config")
    config = (DEPLOY / "config" / "config.properties").read_text()
    (models / "config" / "config.properties").write_text(config.replace(MOUNT, str(models)))


class Pod:
    """TorchServe and the KServe model server in one private network namespace."""

    def __init__(self, protocol: str, environment: Environment, root: Path):
        self.protocol, self.environment, self.root = protocol, environment, root
        self.models = root / "mnt-models"
        storage_layout(self.models)
        self.network = PrivateNetwork.create()
        self.url = f"http://{self.network.address}:{WRAPPER_PORTS['http']}"
        ports = config_ports(deploy_settings())
        home = root / "home"   # the container's working directory: TorchServe's logs/
        home.mkdir()
        self.torchserve = Server.on_ports(
            home, {"inference": ports["inference_address"], "management": ports["management_address"],
                   "metrics": ports["metrics_address"]},
            own_temp_env(home / "tmp", container_env(protocol, environment)))
        self.wrapper_log = root / "kserve.log"
        self.wrapper = None

    def start(self) -> None:
        """The runtime's entrypoint: TorchServe's start command, then the wrapper; ready when
        KServe says so, else RuntimeError with both servers' logs."""
        start = [part.replace(MOUNT, str(self.models)) for part in RUNTIME_START]
        subprocess.run(self.network.command(start), cwd=self.torchserve.workdir, env=self.torchserve.env,
                       check=True, stdout=subprocess.DEVNULL)
        env = own_temp_env(self.root / "kserve-tmp", {
            "CONFIG_PATH": str(self.models / "config" / "config.properties"), "PROTOCOL_VERSION": self.protocol,
            "MODEL_LOAD_DELAY": "1", "MODEL_LOAD_MAX_TRY": str(READY_TIMEOUT_S)})
        with open(self.wrapper_log, "w") as log:
            self.wrapper = subprocess.Popen(self.network.command([self.environment.kserve_python, WRAPPER]), env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 2 * READY_TIMEOUT_S
        while self.wrapper.poll() is None and time.monotonic() < deadline:
            try:   # the wrapper opens its ports once TorchServe has a READY worker, or once it gave up
                if requests.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    if requests.get(f"{self.url}/v2/models/mnist/ready", timeout=2).status_code == 200:
                        return
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the pod did not become ready (KServe wrapper: exit code {self.wrapper.poll()}):\n"
                           f"--- KServe wrapper\n{self.wrapper_log.read_text()[-2000:]}\n"
                           f"--- TorchServe\n{self.torchserve.log('ts_log.log')[-1500:]}\n"
                           f"--- its workers\n{self.torchserve.log()[-2000:]}")

    def listeners(self) -> dict[int, int]:
        """Each TCP port listening in the pod and the pid of the process that holds it."""
        listing = self.network.run(["ss", "-ltnpH"], check=True).stdout
        return {int(re.search(r":(\d+)\s", line).group(1)): int(re.search(r"pid=(\d+)", line).group(1))
                for line in listing.splitlines()}

    def stop(self) -> None:
        if self.wrapper is not None and self.wrapper.poll() is None:
            self.wrapper.terminate()
            try:
                self.wrapper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.wrapper.kill()
                self.wrapper.wait()
        stop_server(self.torchserve)
        self.network.close()


POD_KINDS = [(environment, protocol) for environment in ENVIRONMENTS for protocol in sorted(ENVELOPES)]


@pytest.fixture(scope="module", params=POD_KINDS, ids=[f"{env}-{protocol}" for env, protocol in POD_KINDS])
def pod(request):
    environment = ENVIRONMENTS[request.param[0]]
    for needed in (environment.bin / "torchserve", environment.kserve_python):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: `{environment.built_by}` builds it")
    root = Path(tempfile.mkdtemp(prefix="mnist-kserve-pod-"))
    try:
        try:
            network_pod = Pod(request.param[1], environment, root)
        except (OSError, subprocess.CalledProcessError) as error:
            pytest.skip(f"no network namespace here (needs root): {error}")
        try:
            network_pod.start()
            yield network_pod
        finally:
            network_pod.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_both_servers_listen_on_their_own_ports(pod):
    frontend = pod.torchserve.processes()[0]
    ports = config_ports(deploy_settings())
    expected = {port: frontend.pid for port in ports.values()}
    expected.update({port: pod.wrapper.pid for port in WRAPPER_PORTS.values()})
    assert pod.listeners() == expected
    # From outside the pod: KServe's HTTP port and TorchServe's metrics answer, the rest is loopback.
    for port in (ports["inference_address"], ports["grpc_inference_port"], ports["grpc_management_port"]):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((pod.network.address, port), timeout=3).close()


def test_kserve_reports_the_model_ready(pod):
    assert requests.get(f"{pod.url}/", timeout=10).json() == {"status": "alive"}
    assert requests.get(f"{pod.url}/v2/health/ready", timeout=10).json() == {"ready": True}
    assert requests.get(f"{pod.url}/v2/models/mnist/ready", timeout=10).json() == {"name": "mnist", "ready": True}
    assert requests.get(f"{pod.url}/v1/models/mnist", timeout=10).json() == {"name": "mnist", "ready": True}


def test_predictions_through_kserve_answer_as_the_plain_api(pod, test_set, plain_answers):
    envelope = ENVELOPES[pod.protocol]
    rows = [png_row(envelope, image, f"digit-{i}") for i, image in enumerate(test_set[0][:DIGITS])]
    status, answers = post(pod.url, envelope, rows)
    assert status == 200
    assert answers == plain_answers


def test_explanations_through_kserve_answer_as_the_plain_api(pod, server, test_set):
    """KServe 0.13 serves explain on its v1 routes only: an explaining replica runs protocolVersion v1."""
    if pod.protocol == "v2":
        assert requests.post(f"{pod.url}/v2/models/mnist/explain", json={"inputs": []}, timeout=10).status_code == 404
        return
    images = test_set[0][:2]
    rows = [png_row("kserve", images[0], "predicted"), png_row("kserve", images[1], "named", target=4)]
    status, answers = post(pod.url, "kserve", rows, explain=True)
    assert status == 200
    plain = [server.predict(json.dumps({"data": base64.b64encode(mnist_png(image)).decode(), **target}),
                            "application/json", endpoint="explanations").json()
             for image, target in zip(images, [{}, {"target": 4}])]
    for answer, expected in zip(answers, plain, strict=True):   # the plain server batches: float noise
        np.testing.assert_allclose(answer.pop("attributions"), expected.pop("attributions"), atol=1e-5)
        assert answer.pop("convergence_delta") == pytest.approx(expected.pop("convergence_delta"), abs=1e-5)
        assert answer == expected


def test_the_documented_request_is_answered(pod, server):
    """The body docs/kserve.md sends with curl (request.json for v2, request-v1.json for v1):
    MNIST test digit 0, a 7, answered as the plain API answers its PNG."""
    body = json.loads((DEPLOY / DOCUMENTED_REQUESTS[pod.protocol]).read_text())
    rows = body.get("instances") or body["inputs"]
    status, [answer] = post(pod.url, ENVELOPES[pod.protocol], rows)
    assert status == 200
    png = rows[0]["data"] if pod.protocol == "v1" else rows[0]["data"][0]
    assert answer == server.predict(base64.b64decode(png)).json()
    assert answer["digit"] == 7


def inference_count(pod) -> float:
    """ts_inference_requests_total for mnist, scraped from outside the pod as Prometheus would."""
    metrics_port = config_ports(deploy_settings())["metrics_address"]
    page = requests.get(f"http://{pod.network.address}:{metrics_port}/metrics", timeout=10)
    assert page.status_code == 200
    counts = re.findall(r'^ts_inference_requests_total\{[^}]*model_name="mnist"[^}]*\} (\S+)$', page.text, re.M)
    return sum(map(float, counts))


def test_torchserve_metrics_count_kserve_requests(pod, test_set):
    envelope = ENVELOPES[pod.protocol]
    before = inference_count(pod)
    status, _ = post(pod.url, envelope, [png_row(envelope, test_set[0][0], "digit")])
    assert status == 200
    assert inference_count(pod) == before + 1


def test_a_bad_input_through_kserve_is_a_500_that_carries_torchserve_answer(pod, test_set):
    """KServe 0.13's forwarding turns TorchServe's 4xx into its own 500, whose message holds
    TorchServe's status and body (each input's answer or error): what clients of the pod get."""
    envelope = ENVELOPES[pod.protocol]
    v1_row, v2_row, status, kind = BAD_ROWS["not an image"]
    rows = [png_row(envelope, test_set[0][0], "good"), v1_row if envelope == "kserve" else v2_row]
    body = {"instances": rows} if envelope == "kserve" else {"inputs": rows}
    reply = requests.post(f"{pod.url}/{ROUTES[envelope][0]}", json=body, timeout=60)
    assert reply.status_code == 500
    assert f"'{status} " in reply.json()["error"] and kind in reply.json()["error"]


def test_the_probes_pass_in_the_pod(pod):
    """Readiness and liveness: the manifest's command, run in the container (its python3, its
    environment) on the storage layout's copy of container/healthcheck.py."""
    model = yaml.safe_load((DEPLOY / "inferenceservice.yaml").read_text())["spec"]["predictor"]["model"]
    [command] = {tuple(model[probe]["exec"]["command"]) for probe in ("readinessProbe", "livenessProbe")}
    assert command[0] == "python3" and command[-1] == f"{MOUNT}/config/config.properties"
    check = pod.network.run([part.replace(MOUNT, str(pod.models)) for part in command], cwd=pod.torchserve.workdir,
                            env=pod.torchserve.env, timeout=60)
    assert check.returncode == 0, check.stderr
    # Ready with one READY worker: the pod's second may still be loading.
    workers = json.loads(deploy_settings()["model_snapshot"])["models"]["mnist"]["1.0"]["maxWorkers"]
    assert re.fullmatch(rf"healthy: [1-{workers}]/{workers} workers READY, the known 7 answered right\n", check.stdout)


def test_the_runtime_lacks_scipy_and_the_archive_brings_it():
    """The stand-in has no scipy, as the image has none: the pods above loaded the archive only
    because TorchServe installed config/archive-requirements.txt beside it."""
    environment = ENVIRONMENTS["kserve-runtime"]
    missing = subprocess.run([environment.bin / "python3", "-c", "import scipy"], capture_output=True, text=True)
    assert "No module named 'scipy'" in missing.stderr
    assert {wheel.name.split("-")[0] for wheel in environment.package_index.glob("*.whl")} == {"numpy", "scipy"}
