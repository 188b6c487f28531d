"""Load test of the shipped bundle beside its references, all running at once and loaded in turn.

    python -m scripts.bench                                  # what `make bench` runs
    BENCH_ROUNDS=5 BENCH_SECONDS=10 python -m scripts.bench  # more and longer points

1. In-process ceiling: our preprocessing + forward of the same PNG, no HTTP (images/s).
2. Four servers, each driven by `hey` with a real MNIST test digit as PNG:
   - shipped: model_store/mnist.mar started by scripts/start.sh exactly as `make serve` starts
     it (harness.server.started_like_make_serve), only its ports moved;
   - plain_python: FastAPI + uvicorn, one worker, the same weights and preprocessing
     (harness/plain_server.py), the server this bundle has to beat;
   - torchserve_defaults: the same handler under TorchServe's default model settings (batch 1,
     no thread cap), started the same way;
   - floor: a handler that does nothing (harness/floor_handler.py) with the shipped model
     settings, i.e. what TorchServe itself costs per request, started the same way;
   - with BENCH_ONE_CORE=1, shipped_1_core: the shipped server started the same way under
     `taskset` on one CPU (so with one worker), `hey` still free to use every CPU.
3. Each server is warmed up once after its start, BENCH_START_WARMUP s at 16 clients (so that the
   measured servers run compiled, as a server that has been up a while does).
4. At each concurrency the servers take turns, BENCH_ROUNDS rounds (the order rotates each
   round), each turn a BENCH_WARMUP s warm-up then a BENCH_SECONDS s point. On a shared machine
   the load of other work drifts by tens of percent within minutes: only quantities taken in
   the same rounds compare, so the report gives each server's median and spread (min-max) and
   the shipped server's ratio to each other server, computed round by round.
Each server's cold start (start to answering) is timed. Writes bench/out/results.json,
results.md and bench.png.
"""
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
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


def spread(values: list[float | None]) -> dict:
    """Median and min-max of the rounds that measured the quantity (`hey` prints no percentile it
    has too few answers for)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def summarize(rounds: list[dict]) -> dict:
    """Median and min-max over the rounds of one server at one concurrency."""
    summary = {key: spread([p[key] for p in rounds])
               for key in ("rps", "p50_ms", "p99_ms", "server_cpu_percent", "client_cpu_percent")}
    summary["non_2xx"] = sum(p["non_2xx"] + p["transport_errors"] for p in rounds)
    return summary


def ratios(ours: list[dict], theirs: list[dict]) -> dict:
    """Ours over theirs, round by round (each pair measured minutes apart at most): median and min-max."""
    return {key: spread([a[key] / b[key] if a[key] and b[key] else None for a, b in zip(ours, theirs)])
            for key in ("rps", "p50_ms", "p99_ms")}


def targets(results: dict) -> list[tuple[str, str, bool]]:
    """Issue 15's targets, each with what this run measured and whether it is met."""
    summary, vs_plain = results["summary"][OURS], results["ratios"]["plain_python"]
    found = []
    if 1 in summary:
        r = vs_plain[1]["p50_ms"]["median"]
        found.append(("c=1: p50 <= 1.2x plain Python's", f"{r:.2f}x", r <= 1.2))
    for c in (16, 64):
        if c in summary:
            r = vs_plain[c]["rps"]["median"]
            found.append((f"c={c}: req/s >= 3x plain Python's", f"{r:.2f}x", r >= 3))
    if 16 in summary:
        p99 = summary[16]["p99_ms"]["median"]
        found.append(("c=16: p99 <= 30 ms", f"{p99} ms", p99 <= 30))
    if 64 in summary and 256 in summary:
        share = summary[256]["rps"]["median"] / summary[64]["rps"]["median"]
        growth = summary[256]["p99_ms"]["median"] / summary[64]["p99_ms"]["median"]
        found += [("c=256: req/s >= 90% of c=64's", f"{share:.0%}", share >= 0.9),
                  ("c=256: p99 <= 4x c=64's", f"{growth:.1f}x", growth <= 4),
                  ("c=256: 0 non-2xx", str(summary[256]["non_2xx"]), summary[256]["non_2xx"] == 0)]
    found.append(("cold start <= 10 s", f"{results['cold_start_s'][OURS]} s", results["cold_start_s"][OURS] <= 10))
    return found


def cell(s: dict, digits: int = 1) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def table(results: dict) -> str:
    lines = [f"{results['rounds']} alternating rounds, {results['warmup_s']} s warm-up + {results['seconds_per_point']} s "
             "per point; median (min-max) over the rounds.", "",
             "| c | server | req/s | p50 ms | p99 ms | non-2xx | server CPU % | hey CPU % |",
             "|---|---|---|---|---|---|---|---|"]
    for c in results["concurrency"]:
        for name in (n for n in SERVERS if c in results["summary"][n]):
            s = results["summary"][name][c]
            lines.append(f"| {c} | {name} | {cell(s['rps'], 0)} | {cell(s['p50_ms'])} | {cell(s['p99_ms'])} "
                         f"| {s['non_2xx']} | {cell(s['server_cpu_percent'], 0)} | {cell(s['client_cpu_percent'], 0)} |")
    others = [n for n in SERVERS if n != OURS]
    lines += ["", "Shipped over each other server, round by round: median (min-max).", "",
              "| c | " + " | ".join(f"req/s ÷ {n} | p50 ÷ {n}" for n in others) + " |",
              "|---|" + "---|---|" * len(others)]
    for c in results["concurrency"]:
        row = [cell(results["ratios"][n][c][k], 2) if c in results["ratios"][n] else "-"
               for n in others for k in ("rps", "p50_ms")]
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if met else '**no**'} |" for name, value, met in targets(results)]
    if 1 in results["concurrency"]:
        floor = ratios(results["points"]["floor"][1], results["points"]["plain_python"][1])["p50_ms"]
        lines += ["", f"At c=1 the floor's p50 (TorchServe with a handler that does nothing) is {cell(floor, 2)} "
                  "times plain Python's: the part of the c=1 ratio that no handler can remove."]
    ceiling = results["in_process_ceiling_images_per_s"]
    lines += ["", "In-process ceiling (1 thread, no HTTP), images/s: "
              + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in ceiling.items()),
              "", "Cold start (start to answering): "
              + ", ".join(f"{n}: {s} s" for n, s in results["cold_start_s"].items())]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(11, 4))
    cs = results["concurrency"]
    for name in SERVERS:
        summary = results["summary"][name]
        measured = [c for c in cs if c in summary]
        rps_ax.plot(measured, [summary[c]["rps"]["median"] for c in measured], marker="o", label=name)
        p99_ax.plot(measured, [summary[c]["p99_ms"]["median"] or float("nan") for c in measured], marker="o", label=name)
    for ax, title in ((rps_ax, "throughput (requests/s, median)"), (p99_ax, "p99 latency (ms, median)")):
        ax.set(xscale="log", title=title, xlabel="concurrent clients")
        ax.legend()
    p99_ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def main() -> dict:
    if not DIGIT.exists():
        subprocess.run(["python", "-m", "scripts.sample_digits", "--count", "10"], check=True, cwd=REPO)
    OUT.mkdir(parents=True, exist_ok=True)
    print("[bench] in-process ceiling", flush=True)
    results = {"seconds_per_point": SECONDS, "warmup_s": WARMUP, "rounds": ROUNDS, "concurrency": CONCURRENCY,
               "cpu_count": os.cpu_count(), "cpu_affinity": sorted(os.sched_getaffinity(0)),
               "in_process_ceiling_images_per_s": in_process_ceiling(DIGIT.read_bytes())}
    print(f"  {results['in_process_ceiling_images_per_s']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for name in ("defaults", "floor"):
            (Path(tmp) / name).mkdir()
        endpoints, results["cold_start_s"] = start_all(stack, Path(tmp))
        points = alternate(endpoints, CONCURRENCY, ROUNDS)
    results["points"] = points
    results["summary"] = {n: {c: summarize(points[n][c]) for c in CONCURRENCY if points[n][c]} for n in SERVERS}
    results["ratios"] = {n: {c: ratios(points[OURS][c], points[n][c]) for c in CONCURRENCY if points[n][c]}
                         for n in SERVERS if n != OURS}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    (OUT / "results.md").write_text(table(results))
    plot(results, OUT / "bench.png")
    print(table(results) + f"[bench] wrote {OUT}/results.json, results.md, bench.png")
    return results


if __name__ == "__main__":
    main()
