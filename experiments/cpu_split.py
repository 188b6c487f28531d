"""CPU per request, by process (the frontend, the workers together): the shipped archive beside
another one, alternating (docs/performance.md, "The lead for c=1" and "Metric lines").

    PYTHONPATH=. python experiments/cpu_split.py                          # beside the do-nothing floor, 1 client
    PYTHONPATH=. python experiments/cpu_split.py --against OTHER.mar --clients 16 --rounds 4

Each turn is 2 s of warm-up and 5 s measured with `hey` and the test PNG; the CPU time of each
server's processes over the 5 s is divided by the requests answered. The last lines are the
medians over the rounds. To compare with an earlier version of the handler, pack that version:
`git worktree add /tmp/old <commit> && (cd /tmp/old && ln -s $PWD/artifacts . ; EXPORT_PATH=/tmp/old/out scripts/archive.sh)`.
"""
import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path

from harness.archives import floor_archive
from harness.server import ARCHIVE, serving
from scripts.bench import hey, parse_hey, torchserve_endpoint

WARMUP_S, SECONDS = 2, 5


def cpu_ms(processes) -> list[float]:
    return [1000 * sum(p.cpu_times()[:2]) for p in processes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="the other archive (default: the do-nothing floor)")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        other = args.against or floor_archive(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        servers = {"shipped": stack.enter_context(serving(ARCHIVE)), "other": stack.enter_context(serving(other))}
        split = {name: [] for name in servers}
        for turn in range(args.rounds):
            for name in (list(servers) if turn % 2 == 0 else list(servers)[::-1]):
                server, endpoint = servers[name], torchserve_endpoint(servers[name])
                hey(endpoint.url, endpoint.key, args.clients, WARMUP_S)
                frontend, workers = server.processes()
                before = cpu_ms([frontend]) + [sum(cpu_ms(workers))]
                point = parse_hey(hey(endpoint.url, endpoint.key, args.clients, SECONDS))
                after = cpu_ms([frontend]) + [sum(cpu_ms(workers))]
                answered = point["rps"] * SECONDS
                split[name].append([(b - a) / answered for a, b in zip(before, after)])
                print(f"round {turn + 1} {name:8s} {point['rps']:7.1f} req/s  frontend {split[name][-1][0]:.2f}  "
                      f"workers {split[name][-1][1]:.2f} ms of CPU per request", flush=True)
    for name, rounds in split.items():
        print(f"median   {name:8s} frontend {statistics.median(r[0] for r in rounds):.2f}  "
              f"workers {statistics.median(r[1] for r in rounds):.2f} ms of CPU per request")


if __name__ == "__main__":
    main()
