"""Where the TorchServe frontend's CPU goes in its first minute under load, thread by thread.

    PYTHONPATH=. python experiments/jit_warmup.py --clients 16 --points 10

Starts the shipped archive (harness.server.serving), then loads it with `hey` in back-to-back
points of `--seconds` each, and after every point prints the requests/s and the frontend's CPU
per request in its busiest thread groups, read from /proc (thread names as Linux keeps them, 15
characters, numbers as #: `C# CompilerThre` is the JIT compiler, `epollEventLoopG` netty's I/O,
`W-#-mnist_#.` the threads that talk to the workers). docs/performance.md ("The frontend's JIT warm-up") quotes it.
"""
import argparse
import collections
import os
import re

from harness.server import ARCHIVE, serving
from scripts.bench import hey, parse_hey, torchserve_endpoint

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_cpu_ms(pid: int) -> dict[str, tuple[str, float]]:
    """{thread id: (name, user + system CPU in ms)} of a process."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat, open(f"/proc/{pid}/task/{tid}/comm") as comm:
                fields, name = stat.read().rsplit(")", 1)[1].split(), comm.read().strip()
        except OSError:     # the thread ended
            continue
        threads[tid] = (name, 1000 * (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--groups", type=int, default=3, help="thread groups printed per point")
    args = parser.parse_args()
    with serving(ARCHIVE) as server:
        endpoint = torchserve_endpoint(server)
        frontend, _ = server.processes()
        for point in range(args.points):
            before = thread_cpu_ms(frontend.pid)
            rps = parse_hey(hey(endpoint.url, endpoint.key, args.clients, args.seconds))["rps"]
            groups = collections.Counter()
            for tid, (name, ms) in thread_cpu_ms(frontend.pid).items():
                groups[re.sub(r"\d+", "#", name)] += ms - before.get(tid, (name, 0.0))[1]
            answered = rps * args.seconds
            busiest = ", ".join(f"{name} {ms / answered:.3f}" for name, ms in groups.most_common(args.groups))
            print(f"{(point + 1) * args.seconds:4d} s  {rps:7.1f} req/s  frontend ms of CPU per request: {busiest}",
                  flush=True)


if __name__ == "__main__":
    main()
