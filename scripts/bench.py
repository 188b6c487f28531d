"""Load test of the shipped bundle, with its references measured in the same run.

    python -m scripts.bench                       # what `make bench` runs
    BENCH_SECONDS=15 python -m scripts.bench      # longer points

1. In-process ceiling: our preprocessing + forward of the same PNG, no HTTP (images/s).
2. The bundle as shipped (model_store/mnist.mar, config/), driven by `hey` at several
   concurrencies with a real MNIST test digit as PNG, after a warm-up at each point.
3. The same handler under TorchServe's default model settings (batch 1, no thread cap).
4. The floor: a handler that does nothing (harness/floor_handler.py) with the shipped
   model settings, i.e. what TorchServe itself costs per request.
Each server also gets its cold start (torchserve --start -> model READY) timed.
Writes bench/out/results.json, results.md and bench.png.
"""
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from configuration import handler_settings, model_config
from harness.archives import floor_archive, pack
from harness.server import REPO, WEIGHTS, Server, serving
from model.inference import load_model, probabilities
from model.preprocess import prepare, to_model_input

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "5"))   # the JVM compiles its hot paths for seconds
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,4,16,64,256").split(",")]
REFERENCE_CONCURRENCY = [1, 16, 64]
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


def server_cpu_seconds(server: Server) -> float:
    """CPU time of the server's frontend and workers."""
    frontend, workers = server.processes()
    return sum(sum(p.cpu_times()[:2]) for p in [frontend, *workers])


def drive(archive: Path, concurrencies: list[int], overrides: dict | None = None) -> dict:
    """Start a server on `archive` (config.properties `overrides` applied), time its cold start,
    and load it at each concurrency."""
    started = time.perf_counter()
    with serving(archive, overrides=overrides) as server:
        result = {"cold_start_s": round(time.perf_counter() - started, 2), "points": {}}
        url = f"{server.inference}/predictions/mnist"
        for c in concurrencies:
            hey(url, server.key(), c, WARMUP)
            cpu = server_cpu_seconds(server)
            point = parse_hey(hey(url, server.key(), c, SECONDS))
            point["server_cpu_percent"] = round(100 * (server_cpu_seconds(server) - cpu) / SECONDS)
            result["points"][c] = point
            print(f"  c={c:<4} {point}", flush=True)
    return result


def default_settings_archive(tmp: Path) -> Path:
    """Our handler with TorchServe's default model settings: no batching, torch's own thread count."""
    shipped = model_config()
    handler = {k: v for k, v in shipped["handler"].items() if k != "torch_threads"}
    return pack(tmp, {"deviceType": shipped["deviceType"], "handler": handler})


SERVERS = ("shipped", "torchserve_defaults", "floor")


def table(results: dict) -> str:
    lines = ["| server | c | req/s | p50 ms | p90 ms | p99 ms | non-2xx | server CPU % |", "|---|---|---|---|---|---|---|---|"]
    for name in SERVERS:
        for c, p in results[name]["points"].items():
            lines.append(f"| {name} | {c} | {p['rps']:.0f} | {p['p50_ms']} | {p['p90_ms']} | {p['p99_ms']} "
                         f"| {p['non_2xx']} | {p['server_cpu_percent']} |")
    ceiling = results["in_process_ceiling_images_per_s"]
    lines += ["", "In-process ceiling (1 thread, no HTTP), images/s: "
              + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in ceiling.items()),
              "", "Cold start (torchserve --start to model READY): "
              + ", ".join(f"{n}: {results[n]['cold_start_s']} s" for n in SERVERS)]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name in SERVERS:
        points = results[name]["points"]
        cs = list(points)
        rps_ax.plot(cs, [points[c]["rps"] for c in cs], marker="o", label=name)
        p99_ax.plot(cs, [points[c]["p99_ms"] for c in cs], marker="o", label=name)
    for ax, title in ((rps_ax, "throughput (requests/s)"), (p99_ax, "p99 latency (ms)")):
        ax.set(xscale="log", title=title, xlabel="concurrent clients")
        ax.legend()
    p99_ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> dict:
    if not DIGIT.exists():
        subprocess.run(["python", "-m", "scripts.sample_digits", "--count", "10"], check=True, cwd=REPO)
    OUT.mkdir(parents=True, exist_ok=True)
    print("[bench] in-process ceiling", flush=True)
    results = {"seconds_per_point": SECONDS, "cpu_count": os.cpu_count(),
               "in_process_ceiling_images_per_s": in_process_ceiling(DIGIT.read_bytes())}
    print(f"  {results['in_process_ceiling_images_per_s']}\n[bench] the shipped bundle", flush=True)
    results["shipped"] = drive(REPO / "model_store" / "mnist.mar", CONCURRENCY)
    with tempfile.TemporaryDirectory() as tmp:
        print("[bench] the same handler with TorchServe's default model settings", flush=True)
        results["torchserve_defaults"] = drive(default_settings_archive(Path(tmp)), REFERENCE_CONCURRENCY)
    with tempfile.TemporaryDirectory() as tmp:
        print("[bench] the floor: a handler that does nothing, shipped model settings", flush=True)
        results["floor"] = drive(floor_archive(Path(tmp)), CONCURRENCY)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    (OUT / "results.md").write_text(table(results))
    plot(results, OUT / "bench.png")
    print(table(results) + f"[bench] wrote {OUT}/results.json, results.md, bench.png")
    return results


if __name__ == "__main__":
    main()
