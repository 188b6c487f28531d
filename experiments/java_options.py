"""The shipped server beside the same server with other JVM options, from their start.

    PYTHONPATH=. python experiments/java_options.py -- -XX:TieredStopAtLevel=1   # "--": options follow

Both are started as `make serve` starts them (harness.server.started_like_make_serve), the
other with the options in JAVA_TOOL_OPTIONS, which every JVM reads. Their cold starts are
timed; then, with no warm-up, they take turns at 16 clients for `--early` rounds (the first
half minute of load, while the JIT compiler works: docs/performance.md, "The frontend's JIT
warm-up"), then for `--rounds` rounds at 16, 1 and 64 clients (`make bench`'s alternation and
points). Prints each server's requests/s, p50 and p99 round by round.
"""
import argparse
import contextlib
import time

from harness.server import ARCHIVE, started_like_make_serve
from scripts.bench import alternate, torchserve_endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", help="JVM options for the other server, e.g. -XX:TieredStopAtLevel=1")
    parser.add_argument("--early", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = {"shipped": {}, args.options: {"JAVA_TOOL_OPTIONS": args.options}}
    with contextlib.ExitStack() as stack:
        endpoints = {}
        for name, env in variants.items():
            started = time.perf_counter()
            endpoints[name] = torchserve_endpoint(stack.enter_context(started_like_make_serve(ARCHIVE, env)))
            print(f"{name}: cold start {time.perf_counter() - started:.1f} s", flush=True)
        for label, points in (("from start", alternate(endpoints, [16], args.early)),
                              ("then", alternate(endpoints, [16, 1, 64], args.rounds))):
            for name, by_clients in points.items():
                for clients, rounds in by_clients.items():
                    print(f"{label:10s} {name:28s} c={clients:<3d} req/s {[round(p['rps']) for p in rounds]}  "
                          f"p50 {[p['p50_ms'] for p in rounds]}  p99 {[p['p99_ms'] for p in rounds]}")


if __name__ == "__main__":
    main()
