"""What `make bench` (scripts/bench.py) and `make bench-sweep` drive: the servers under test, `hey`
at each concurrency in alternation, each server's and the client's CPU, the in-process ceiling.
Settings come from BENCH_* variables (scripts/bench.py's docstring)."""
import contextlib
import os
import re
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import requests
import torch

from configuration import handler_settings, model_config
from harness.archives import floor_archive, pack
from harness.plain_server import PlainServer, plain_python_server
from harness.server import REPO, WEIGHTS, Server, serving, started_like_make_serve
from model.inference import load_model, probabilities
from model.preprocess import prepare, to_model_input


SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
# s at 16 clients once after each start, unmeasured: TorchServe's frontend is Java, and its JIT
# compiler spends the first ~30 s of such load compiling, on the same cores (docs/performance.md)
START_WARMUP = int(os.environ.get("BENCH_START_WARMUP", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64,256").split(",")]
DEFAULTS_MAX_CONCURRENCY = 64   # past it TorchServe's defaults time out and take minutes to drain
DRAIN_TIMEOUT_S = 300
OUT = REPO / "bench" / "out"
DIGIT = REPO / "artifacts" / "samples" / "test00000-digit7.png"


def in_process_ceiling(png: bytes) -> dict:
    """Images/s of decode + normalize + forward on one thread, at batch 1, 16 and 64."""
    torch.set_num_threads(1)
    model = load_model(str(WEIGHTS))
    cap = handler_settings()["max_pixels"]
    result = {}
    for batch in (1, 16, 64):
        def step():
            digits = np.stack([prepare(png, cap) for _ in range(batch)])
            with torch.inference_mode():
                probabilities(model, to_model_input(torch.from_numpy(digits)), temperature=1.0)
        step()
        started, images = time.perf_counter(), 0
        while time.perf_counter() - started < 3:
            step()
            images += batch
        result[f"batch_{batch}"] = round(images / (time.perf_counter() - started))
    return result


def hey(url: str, key: str, concurrency: int, seconds: int) -> str:
    return subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "image/png",
                           "-D", str(DIGIT), "-H", f"Authorization: Bearer {key}", url],
                          capture_output=True, text=True, check=True).stdout


def parse_hey(report: str) -> dict:
    def latency(pct):
        found = re.search(rf"{pct}% in ([\d.]+) secs", report)
        return round(float(found.group(1)) * 1000, 2) if found else None
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", report)}
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1)),
            "p50_ms": latency(50), "p90_ms": latency(90), "p99_ms": latency(99),
            "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
            "transport_errors": sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+Post", report, re.M))}


def drive(archive: Path, concurrencies: list[int], overrides: dict | None = None) -> dict:
    """Start a server on `archive` (config.properties `overrides` applied), time its cold start,
    and load it at each concurrency (`make bench-sweep`)."""
    started = time.perf_counter()
    with serving(archive, overrides=overrides) as server:
        result = {"cold_start_s": round(time.perf_counter() - started, 2), "points": {}}
        for c in concurrencies:
            result["points"][c] = measure(torchserve_endpoint(server), c)
            print(f"  c={c:<4} {result['points'][c]}", flush=True)
    return result


def default_settings_archive(tmp: Path) -> Path:
    """Our handler with TorchServe's default model settings: no batching, torch's own thread count."""
    shipped = model_config()
    handler = {k: v for k, v in shipped["handler"].items() if k != "torch_threads"}
    return pack(tmp, {"deviceType": shipped["deviceType"], "handler": handler})


# BENCH_ONE_CORE=1 adds the shipped server started on the first of the bench's CPUs only: its
# ratios show what the second core gives, measured in the same alternation.
ONE_CORE = os.environ.get("BENCH_ONE_CORE") == "1"
SERVERS = ("shipped", "plain_python", "torchserve_defaults", "floor") + (("shipped_1_core",) if ONE_CORE else ())
OURS = "shipped"


@dataclass
class Endpoint:
    """A server under test: where to send predictions, its key, and its processes (for CPU time)."""

    url: str
    key: str
    processes: Callable[[], list[psutil.Process]]


def torchserve_endpoint(server: Server) -> Endpoint:
    def processes() -> list[psutil.Process]:
        frontend, workers = server.processes()
        return [frontend, *workers]
    return Endpoint(f"{server.inference}/predictions/mnist", server.key(), processes)


def plain_endpoint(server: PlainServer) -> Endpoint:
    return Endpoint(server.url, server.key, lambda: [psutil.Process(server.pid)])


def cpu_seconds(endpoint: Endpoint) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in endpoint.processes())


def measure(endpoint: Endpoint, concurrency: int) -> dict:
    """One point: a warm-up, then BENCH_SECONDS of `hey`, with the server's CPU use and the load
    client's (on a small machine `hey` competes with the server for the same cores)."""
    hey(endpoint.url, endpoint.key, concurrency, WARMUP)
    cpu, client = cpu_seconds(endpoint), client_cpu_seconds()
    point = parse_hey(hey(endpoint.url, endpoint.key, concurrency, SECONDS))
    point["server_cpu_percent"] = round(100 * (cpu_seconds(endpoint) - cpu) / SECONDS)
    point["client_cpu_percent"] = round(100 * (client_cpu_seconds() - client) / SECONDS)
    drain(endpoint)
    return point


def drain(endpoint: Endpoint) -> None:
    """Wait until the server has answered what `hey` left queued: one more request, answered after
    the queue ahead of it. A saturated server works through its queue after the clients are gone,
    and would take the CPU from the next server's turn."""
    requests.post(endpoint.url, data=DIGIT.read_bytes(), timeout=DRAIN_TIMEOUT_S,
                  headers={"Authorization": f"Bearer {endpoint.key}", "Content-Type": "image/png"})


def client_cpu_seconds() -> float:
    """CPU time of this process's finished children: the `hey` runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def alternate(endpoints: dict[str, Endpoint], concurrencies: list[int], rounds: int) -> dict:
    """name -> concurrency -> the points of each round, the servers taking turns within a round
    and the order rotating from round to round."""
    points = {name: {c: [] for c in concurrencies} for name in endpoints}
    for c in concurrencies:
        names = [n for n in endpoints if n != "torchserve_defaults" or c <= DEFAULTS_MAX_CONCURRENCY]
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                point = measure(endpoints[name], c)
                points[name][c].append(point)
                print(f"  c={c:<4} round {r + 1}/{rounds} {name:<20} {point['rps']:8.1f} req/s, "
                      f"p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms, non-2xx {point['non_2xx']}", flush=True)
    return points


def start_all(stack: contextlib.ExitStack, tmp: Path) -> tuple[dict[str, Endpoint], dict[str, float]]:
    """Every server of SERVERS started, timed and warmed up once."""
    starters = {"shipped": lambda: started_like_make_serve(REPO / "model_store" / "mnist.mar"),
                "plain_python": plain_python_server,
                "torchserve_defaults": lambda: started_like_make_serve(default_settings_archive(tmp / "defaults")),
                "floor": lambda: started_like_make_serve(floor_archive(tmp / "floor")),
                "shipped_1_core": lambda: started_like_make_serve(REPO / "model_store" / "mnist.mar",
                                                                  cpus=sorted(os.sched_getaffinity(0))[:1])}
    endpoints, cold = {}, {}
    for name in SERVERS:
        print(f"[bench] starting {name}", flush=True)
        started = time.perf_counter()
        running = stack.enter_context(starters[name]())
        cold[name] = round(time.perf_counter() - started, 2)
        endpoints[name] = plain_endpoint(running) if isinstance(running, PlainServer) else torchserve_endpoint(running)
        hey(endpoints[name].url, endpoints[name].key, 16, START_WARMUP)
    return endpoints, cold
