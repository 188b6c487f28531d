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
import subprocess
import tempfile
from pathlib import Path

from harness.bench import (CONCURRENCY, DIGIT, OURS, OUT, ROUNDS, SECONDS, SERVERS, WARMUP, alternate,
                           in_process_ceiling, start_all)
from harness.bench_report import plot, ratios, summarize, table
from harness.server import REPO


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
