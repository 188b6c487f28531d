"""Model settings side by side: the shipped server, the same archive with other model-config.yaml
values, and plain Python, loaded in turn (docs/performance.md, "The c=1 target on TorchServe" and
the log of settings).

    PYTHONPATH=. python experiments/model_settings.py batchSize=1              # batching off
    PYTHONPATH=. python experiments/model_settings.py maxBatchDelay=2 batchSize=16 --rounds 3

Each argument is one variant: KEY=VALUE[,KEY=VALUE...] of model-config.yaml, values read as YAML
(handler.optimize=false reaches into `handler:`).
Every TorchServe is started by scripts/start.sh as `make serve` starts it. At 1, 16 and 64
clients each server takes its turn (the order rotates each round), 2 s of warm-up then 5 s
measured, with `make bench`'s alternation; the medians over the rounds are printed.
"""
import argparse
import contextlib
import tempfile
from pathlib import Path

import yaml

from harness.archives import pack
from harness.plain_server import plain_python_server
from harness.server import started_like_make_serve
from scripts.bench import alternate, plain_endpoint, summarize, torchserve_endpoint
from scripts.bench_sweep import variant_config

CONCURRENCY = (1, 16, 64)


def variant(changes: str) -> dict:
    """The shipped model config with KEY=VALUE[,KEY=VALUE...] replaced (dotted keys reach into
    `handler:`, as in `make bench-sweep`)."""
    return variant_config({key: yaml.safe_load(value) for key, value in
                           (change.split("=", 1) for change in changes.split(","))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="KEY=VALUE[,KEY=VALUE...] of model-config.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        endpoints = {"shipped": torchserve_endpoint(stack.enter_context(started_like_make_serve()))}
        for index, changes in enumerate(args.variants):
            (folder / str(index)).mkdir()
            archive = pack(folder / str(index), variant(changes))
            endpoints[changes] = torchserve_endpoint(stack.enter_context(started_like_make_serve(archive)))
        endpoints["plain_python"] = plain_endpoint(stack.enter_context(plain_python_server()))
        points = alternate(endpoints, list(CONCURRENCY), args.rounds)
    print("| c | server | req/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for c in CONCURRENCY:
        for name in endpoints:
            summary = summarize(points[name][c])
            print(f"| {c} | {name} | {summary['rps']['median']:.0f} | {summary['p50_ms']['median']:.1f} "
                  f"| {summary['p99_ms']['median']:.1f} |")


if __name__ == "__main__":
    main()
