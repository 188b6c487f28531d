"""Batching on or off: the shipped server beside the same archive with `batchSize: 1`, and plain
Python, loaded in turn (docs/performance.md, "The c=1 target on TorchServe").

    PYTHONPATH=. python experiments/batch_of_one.py [ROUNDS]

With batching, a lone request waits the whole `maxBatchDelay`; without it, none. Both TorchServes
are started by scripts/start.sh as `make serve` starts it. At 1, 16 and 64 clients each server
takes its turn (the order rotates each round, 3 rounds by default), 2 s of warm-up then 5 s
measured, with `make bench`'s alternation; the medians over the rounds are printed.
"""
import contextlib
import copy
import sys
import tempfile
from pathlib import Path

from configuration import model_config
from harness.archives import pack
from harness.plain_server import plain_python_server
from harness.server import started_like_make_serve
from scripts.bench import alternate, plain_endpoint, summarize, torchserve_endpoint

CONCURRENCY = (1, 16, 64)


def main(rounds: int) -> None:
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        unbatched = copy.deepcopy(model_config())
        unbatched["batchSize"] = 1
        endpoints = {"shipped": torchserve_endpoint(stack.enter_context(started_like_make_serve())),
                     "batch_size_1": torchserve_endpoint(
                         stack.enter_context(started_like_make_serve(pack(folder, unbatched)))),
                     "plain_python": plain_endpoint(stack.enter_context(plain_python_server()))}
        points = alternate(endpoints, list(CONCURRENCY), rounds)
    print("| c | server | req/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for c in CONCURRENCY:
        for name in endpoints:
            summary = summarize(points[name][c])
            print(f"| {c} | {name} | {summary['rps']['median']:.0f} | {summary['p50_ms']['median']:.1f} "
                  f"| {summary['p99_ms']['median']:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
