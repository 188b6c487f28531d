"""`make demo` (scripts/demo.sh) in a copy of the repository's layout: with no server running it
starts one as `make serve` does; run again while that server answers, it reuses it as it is,
says so, and the key, the frontend and the workers stay the same."""
import os
import shutil
import subprocess

import psutil
import requests

from harness.nginx import PROXY
from harness.server import (PORTS, REPO, START_SCRIPTS, Server, free_ports, port_variables, serving_directory)
from training.user_styles import mnist_png

DEMO_FILES = [*START_SCRIPTS, "scripts/demo.sh", "scripts/smoke.sh", "scripts/token.sh", "configuration.py",
              "deploy/nginx/nginx.conf.template", "deploy/nginx/security-headers.conf", "deploy/nginx/guard.js",
              "deploy/nginx/proxy.py", "config/model-config.yaml", "model/__init__.py", "model/errors.py"]
SMOKE_DIGIT = "artifacts/samples/test00000-digit7.png"   # what scripts/smoke.sh sends: MNIST test digit 0


def test_demo_starts_a_server_only_when_none_answers(test_set):
    workdir = serving_directory()
    for path in DEMO_FILES:
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, workdir / path)
    (workdir / "web").symlink_to(REPO / "web")
    (workdir / SMOKE_DIGIT).parent.mkdir(parents=True)
    (workdir / SMOKE_DIGIT).write_bytes(mnist_png(test_set[0][0]))
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    (workdir / "tmp").mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "TEMP"}, "TMPDIR": str(workdir / "tmp"),
           "DEMO_LISTEN": listen, **port_variables(ports)}
    server = Server.on_ports(workdir, ports, env)

    def demo() -> str:
        ran = subprocess.run([workdir / "scripts" / "demo.sh"], cwd=workdir, env=env, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        return ran.stdout

    def running() -> tuple[str, list[int]]:
        frontend, workers = server.processes()
        return server.key(), [frontend.pid, *sorted(worker.pid for worker in workers)]
    try:
        first = demo()
        assert "[start] TorchServe up" in first and "reusing" not in first
        before = running()
        second = demo()
        assert "[start]" not in second
        assert "TorchServe is already running and answering: reusing it (same key, nothing restarted)" in second
        assert running() == before and all(psutil.pid_exists(pid) for pid in before[1])
        assert f"http://{listen}/#key={before[0]}" in second
        answer = requests.post(f"http://{listen}/predictions/mnist", data=mnist_png(test_set[0][0]), timeout=30,
                               headers={"Authorization": f"Bearer {before[0]}"})
        assert answer.json()["digit"] == int(test_set[1][0])
    finally:
        subprocess.run(["python3", PROXY, "stop", "--run-dir", workdir / "logs" / "nginx"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([workdir / "scripts" / "stop.sh"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=90)
        shutil.rmtree(workdir, ignore_errors=True)
