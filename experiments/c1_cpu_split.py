"""Where a lone request's CPU goes: the frontend (JVM) and each worker, shipped archive beside the
do-nothing floor, alternating (docs/performance.md, "The lead for c=1").

    PYTHONPATH=. python experiments/c1_cpu_split.py
"""
import contextlib
import re
import subprocess
import tempfile
from pathlib import Path

from harness.archives import floor_archive
from harness.server import REPO, serving

DIGIT = REPO / "artifacts/samples/test00000-digit7.png"


def cpu(process) -> float:
    return sum(process.cpu_times()[:2])


with contextlib.ExitStack() as stack:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    servers = {"shipped": stack.enter_context(serving()),
               "floor": stack.enter_context(serving(floor_archive(tmp)))}
    for rnd in range(2):
        for name, s in (servers.items() if rnd == 0 else list(servers.items())[::-1]):
            args = ["hey", "-z", "5s", "-c", "1", "-m", "POST", "-T", "image/png", "-D", str(DIGIT),
                    "-H", f"Authorization: Bearer {s.key()}", f"{s.inference}/predictions/mnist"]
            subprocess.run(args, capture_output=True)
            f, ws = s.processes()
            c0 = [cpu(f)] + [cpu(w) for w in ws]
            out = subprocess.run(args, capture_output=True, text=True).stdout
            c1 = [cpu(f)] + [cpu(w) for w in ws]
            n = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * 5
            d = [1000 * (b - a) / n for a, b in zip(c0, c1)]
            print(f"round {rnd+1} {name:8s} {n/5:6.1f} req/s  frontend {d[0]:.2f} ms/req  workers {' '.join(f'{x:.2f}' for x in d[1:])} ms/req", flush=True)
