"""When a freshly started TorchServe says it is healthy, and when it can really answer.

    PYTHONPATH=. .venv/bin/python experiments/readiness_timeline.py --runs 3

Starts the shipped bundle as the tests do (harness/server.py), then every 0.1 s asks /ping,
the management API (every worker READY) and container/healthcheck.py, and prints the seconds
from `torchserve --start` to the first "Healthy", the first all-READY and the first passing
health check.
"""
import argparse
import shutil
import subprocess
import sys
import time

import requests

from harness.server import (PORTS, REPO, START, Server, free_ports, own_temp_env, serving_directory, stop_server,
                            write_server_config)


def first_times(server: Server, started: float, timeout_s: float = 180) -> dict:
    found = {}
    while len(found) < 3 and time.monotonic() - started < timeout_s:
        now = time.monotonic() - started
        try:
            headers = {"Authorization": f"Bearer {server.key()}"}
            if requests.get(f"{server.inference}/ping", headers=headers, timeout=2).json().get("status") == "Healthy":
                found.setdefault("ping_healthy_s", now)
            workers = requests.get(f"{server.management}/models/mnist", timeout=2,
                                   headers={"Authorization": f"Bearer {server.key('management')}"}).json()[0]["workers"]
            if workers and all(w["status"] == "READY" for w in workers):
                found.setdefault("all_workers_ready_s", now)
        except (requests.RequestException, FileNotFoundError, ValueError, KeyError):
            pass
        check = subprocess.run([sys.executable, REPO / "container" / "healthcheck.py"], cwd=server.workdir,
                               env=server.env, capture_output=True)
        if check.returncode == 0:
            found.setdefault("healthcheck_passes_s", time.monotonic() - started)
        time.sleep(0.1)
    return {k: round(v, 1) for k, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    for _ in range(parser.parse_args().runs):
        workdir = serving_directory()
        ports = dict(zip(PORTS, free_ports(len(PORTS))))
        write_server_config(workdir / "config" / "config.properties", ports)
        server = Server.on_ports(workdir, ports, own_temp_env(workdir / "tmp"))
        started = time.monotonic()
        subprocess.run(START, cwd=workdir, env=server.env, check=True, stdout=subprocess.DEVNULL)
        try:
            print(first_times(server, started), flush=True)
        finally:
            stop_server(server)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
