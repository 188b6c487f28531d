"""Tuning sweep: the shipped bundle beside variants of its settings, all in one run.

    python -m scripts.bench_sweep                    # what `make bench-sweep` runs
    SWEEP_VARIANTS=shipped,delay_1 python -m scripts.bench_sweep

Every variant is the shipped archive with some model-config.yaml values replaced and/or
config.properties settings overridden, driven by `hey` at c=1, 16 and 64 exactly as
`make bench` drives the shipped bundle. The shipped settings run first and again last, so
the drift of this shared machine during the sweep is visible next to every difference.
Writes bench/out/sweep.json and sweep.md; docs/performance.md logs the predictions and results.
"""
import copy
import json
import os
import tempfile
from pathlib import Path

from configuration import model_config
from harness.archives import pack
from harness.bench import OUT, drive

CONCURRENCY = [int(c) for c in os.environ.get("SWEEP_CONCURRENCY", "1,16,64").split(",")]
DEFAULT_LOGGING = {"vmargs": ""}   # TorchServe's own log4j2.xml: DEBUG, ~7 lines per request

# name -> (model-config.yaml changes, config.properties overrides)
VARIANTS = {
    "shipped": ({}, {}),
    "default_logging": ({}, DEFAULT_LOGGING),
    "async_logging": ({}, {"async_logging": "true"}),
    "eager_model": ({"handler.optimize": False}, {}),
    "delay_1": ({"maxBatchDelay": 1}, {}),
    "delay_5": ({"maxBatchDelay": 5}, {}),
    "batch_8": ({"batchSize": 8}, {}),
    "batch_8_delay_1": ({"batchSize": 8, "maxBatchDelay": 1}, {}),
    "batch_32": ({"batchSize": 32}, {}),
    "workers_1": ({"minWorkers": 1, "maxWorkers": 1}, {}),
    "workers_3": ({"minWorkers": 3, "maxWorkers": 3}, {}),
    "torch_threads_2": ({"handler.torch_threads": 2}, {}),
    "netty_1": ({}, {"number_of_netty_threads": "1", "netty_client_threads": "1"}),
    "netty_4": ({}, {"number_of_netty_threads": "4", "netty_client_threads": "4"}),
}


def variant_config(changes: dict) -> dict:
    """The shipped model config with dotted keys ("handler.optimize") replaced."""
    config = copy.deepcopy(model_config())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def table(results: dict) -> str:
    """req/s and p99 latency at each concurrency (p50 at c=1, where the target is set)."""
    header = "".join(f" c={c} req/s | c={c} {'p50' if c == 1 else 'p99'} ms |" for c in CONCURRENCY)
    lines = [f"| variant |{header} non-2xx |", "|---|" + "---|" * (2 * len(CONCURRENCY) + 1)]
    for name, result in results.items():
        cells = []
        for c in CONCURRENCY:
            p = result["points"][c]
            cells += [f"{p['rps']:.0f}", str(p["p50_ms"] if c == 1 else p["p99_ms"])]
        non_2xx = sum(p["non_2xx"] for p in result["points"].values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {non_2xx} |")
    return "\n".join(lines) + "\n"


def main() -> dict:
    names = os.environ.get("SWEEP_VARIANTS", ",".join(VARIANTS)).split(",")
    order = names + (["shipped"] if "shipped" in names and len(names) > 1 else [])
    results = {}
    for name in order:
        changes, overrides = VARIANTS[name]
        label = name if name not in results else f"{name} (again)"
        print(f"[sweep] {label}: {changes} {overrides}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results[label] = drive(pack(Path(tmp), variant_config(changes)), CONCURRENCY, overrides)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sweep.json").write_text(json.dumps(results, indent=2))
    (OUT / "sweep.md").write_text(table(results))
    print(table(results) + f"[sweep] wrote {OUT}/sweep.json, sweep.md")
    return results


if __name__ == "__main__":
    main()
