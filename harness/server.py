"""Real TorchServes started the way the tests, `make bench`, `make soak` and the GPU check start theirs.

Each one runs in a fresh folder holding only model_store/mnist.mar and config/ (ports moved to
free ones), with no PYTHONPATH (the archive must run without the repository) and its own
tmp/ folder as TMPDIR (TorchServe's pid file) and TEMP (its worker sockets, .ts.sock.<port>,
and extracted models). Without its own TEMP every server on the machine would put its sockets
in /tmp under the same names and take over another server's.
"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from configuration import REPO, SERVER_CONFIG

WEIGHTS = REPO / "artifacts" / "lenet5_mnist.pt"
ARCHIVE = REPO / "model_store" / "mnist.mar"
SERVING_CONFIG = ["config/config.properties", "config/log4j2.xml"]
# What scripts/start.sh (`make serve`) needs of the repository, the archive aside.
START_SCRIPTS = ["scripts/start.sh", "scripts/stop.sh", "scripts/wait_ready.sh", "container/healthcheck.py",
                 "container/usable_cpus.py"]
START = ["torchserve", "--start", "--ncs", "--ts-config", "config/config.properties",
         "--log-config", "config/log4j2.xml"]
PORTS = ["inference", "management", "metrics", "grpc_inference", "grpc_management"]
READY_TIMEOUT_S = 90


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def port_settings(ports: dict) -> dict:
    """config.properties settings that put a server's APIs on `ports`."""
    return {"inference_address": f"http://127.0.0.1:{ports['inference']}",
            "management_address": f"http://127.0.0.1:{ports['management']}",
            "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
            "grpc_inference_port": str(ports["grpc_inference"]),
            "grpc_management_port": str(ports["grpc_management"])}


def port_variables(ports: dict) -> dict:
    """TorchServe's TS_<KEY> variables that move a server's APIs to `ports` without touching its
    config.properties (it sets enable_envvars_config)."""
    return {f"TS_{key.upper()}": value for key, value in port_settings(ports).items()}


def write_server_config(dest: Path, ports: dict, overrides: dict | None = None) -> Path:
    """config/config.properties with its addresses moved to `ports` and `overrides` applied."""
    settings = {**port_settings(ports), **(overrides or {})}
    lines = []
    for line in SERVER_CONFIG.read_text().splitlines():
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
    ready_s: float | None = None   # from the start command to every worker READY, where start_server timed it

    @classmethod
    def on_ports(cls, workdir: Path, ports: dict, env: dict) -> "Server":
        return cls(workdir, f"http://127.0.0.1:{ports['inference']}", f"http://127.0.0.1:{ports['management']}",
                   f"http://127.0.0.1:{ports['metrics']}", env)

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
        """The Java frontend (its pid file is in this server's TMPDIR) and its live Python workers."""
        pid_file = Path(self.env.get("TMPDIR", tempfile.gettempdir())) / ".model_server.pid"
        frontend = psutil.Process(int(pid_file.read_text()))
        workers = []
        for child in frontend.children():
            with contextlib.suppress(psutil.NoSuchProcess):   # a worker that just died: gone, or a zombie
                if "model_service_worker" in " ".join(child.cmdline()):
                    workers.append(child)
        return frontend, workers

    def worker_sockets(self) -> list[Path]:
        """The Unix sockets the frontend talks to its workers on (each worker's --sock-name)."""
        sockets = []
        for worker in self.processes()[1]:
            command = worker.cmdline()
            sockets.append(Path(command[command.index("--sock-name") + 1]))
        return sockets

    def log(self, name: str = "model_log.log") -> str:
        path = self.workdir / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""


def own_temp_env(tmp: Path, extra_env: dict | None = None) -> dict:
    """This environment without PYTHONPATH, with `tmp` as TMPDIR and TEMP."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp), **(extra_env or {}))
    return env


def wait_ready(server: Server, config: Path | None = None, timeout_s: int = READY_TIMEOUT_S) -> None:
    """Every worker READY and the known digit answered right (scripts/wait_ready.sh; `config` is
    the server's config.properties when it is not config/ in its folder), else RuntimeError
    with the end of the server's log."""
    wait = subprocess.run([REPO / "scripts" / "wait_ready.sh", str(timeout_s), *([str(config)] if config else [])],
                          cwd=server.workdir, env=server.env)
    if wait.returncode != 0:
        stop_server(server)
        raise RuntimeError("TorchServe did not get the model READY:\n" + server.log()[-3000:])


def start_server(workdir: Path, start_command: list[str], extra_env: dict | None = None,
                 overrides: dict | None = None, timeout_s: int = READY_TIMEOUT_S) -> Server:
    """Start TorchServe in `workdir` (which holds config/ and model_store/) and wait until READY;
    `overrides` are config.properties settings (e.g. service_envelope) on top of ours."""
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    write_server_config(workdir / "config" / "config.properties", ports, overrides)
    env = own_temp_env(workdir / "tmp", extra_env)
    started = time.monotonic()
    subprocess.run(start_command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    server = Server.on_ports(workdir, ports, env)
    wait_ready(server, timeout_s=timeout_s)
    server.ready_s = time.monotonic() - started
    return server


def stop_server(server: Server) -> None:
    """`torchserve --stop`, as the module its command runs: a TorchServe installed from wheels into
    a folder on PYTHONPATH (the GPU check's) has no command on PATH."""
    subprocess.run([sys.executable, "-m", "ts.model_server", "--stop"], cwd=server.workdir, env=server.env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)


@contextlib.contextmanager
def serving(archive: Path = ARCHIVE, start_command: list[str] = START, extra_env: dict | None = None,
            overrides: dict | None = None, timeout_s: int = READY_TIMEOUT_S) -> Iterator[Server]:
    """A READY TorchServe on `archive` in a fresh serving directory; on exit it is stopped and
    its directory removed, whatever happened inside."""
    workdir = serving_directory(archive)
    try:
        server = start_server(workdir, start_command, extra_env, overrides, timeout_s)
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def serving_directory(archive: Path = ARCHIVE) -> Path:
    """A fresh temporary directory holding only the archive and the serving config files."""
    workdir = Path(tempfile.mkdtemp(prefix="mnist-serve-"))
    for path in SERVING_CONFIG:
        (workdir / path).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / path, workdir / path)
    (workdir / "model_store").mkdir()
    shutil.copy(archive, workdir / "model_store" / "mnist.mar")
    return workdir


@contextlib.contextmanager
def started_like_make_serve(archive: Path = ARCHIVE, extra_env: dict | None = None,
                            cpus: list[int] | None = None) -> Iterator[Server]:
    """A READY TorchServe on `archive` started by scripts/start.sh, as `make serve` starts it, in a
    fresh copy of the repository's layout: the caller's environment (PYTHONPATH included: the
    Makefile exports it, start.sh must not pass it on), config/ untouched, the ports moved with
    TorchServe's TS_* variables, its own TMPDIR (pid file; start.sh puts the sockets under it).
    `cpus`: start it under `taskset` on those CPUs only, frontend and workers.
    Stopped with scripts/stop.sh and removed on exit."""
    workdir = serving_directory(archive)
    try:
        for path in START_SCRIPTS:
            (workdir / path).parent.mkdir(exist_ok=True)
            shutil.copy2(REPO / path, workdir / path)
        ports = dict(zip(PORTS, free_ports(len(PORTS))))
        (workdir / "tmp").mkdir()
        env = {**{k: v for k, v in os.environ.items() if k != "TEMP"}, "TMPDIR": str(workdir / "tmp"),
               **port_variables(ports), **(extra_env or {})}
        try:
            taskset = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
            subprocess.run([*taskset, workdir / "scripts" / "start.sh"], cwd=workdir, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            yield Server.on_ports(workdir, ports, env)
        finally:   # also after a failed start, which may leave a server behind
            subprocess.run([workdir / "scripts" / "stop.sh"], cwd=workdir, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
