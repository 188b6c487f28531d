"""Sustained mixed load on the shipped bundle: every answer as expected, and no memory growth.

    make soak                                        # 10 minutes, 32 clients
    SOAK_SECONDS=120 SOAK_CONCURRENCY=16 make soak

A fresh TorchServe (model_store/mnist.mar, config/) gets a fixed, shuffled mix of real MNIST
test digits and hostile requests made by the fuzzing generators (harness/hostile.py), plus a
request without a token and a body over max_request_size. Each request must get exactly the
answer TorchServe's worker code gives the same input in-process: a digit its digit, a hostile
input its status and error type (400, 413 or 422; a hostile image that is a digit, 200), the
two frontend refusals 400 and 413. RSS of the Java frontend and of each worker is sampled every
SOAK_SAMPLE_SECONDS (5); past the first SOAK_WARMUP_SECONDS (120) a least-squares line through
each series gives its growth in MB/min.

Exits 1 on any unexpected status, answer or transport error (a request over responseTimeout
included), a worker restart, or a slope above SOAK_MAX_SLOPE (1.0 MB/min: leaking 1 KB per
request at the ~1,000 req/s this mix runs at on 2 cores would be ~60 MB/min).
Writes soak/out/report.json and report.md. The load driver is harness/load.py.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

from harness.load import digit_targets, failed, kill_during_load, kill_failed, mixed_targets, soak
from harness.server import ARCHIVE, REPO, serving
from harness.worker import Worker
from training.data import ensure_mnist, load_raw

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "32"))
SAMPLE_SECONDS = float(os.environ.get("SOAK_SAMPLE_SECONDS", "5"))
WARMUP_SECONDS = float(os.environ.get("SOAK_WARMUP_SECONDS", "120"))
MAX_SLOPE = float(os.environ.get("SOAK_MAX_SLOPE", "1.0"))
OUT = REPO / "soak" / "out"
def markdown(report: dict) -> str:
    lines = [f"Soak: {report['seconds']} s, {report['concurrency']} clients, {report['requests']} requests "
             f"({report['requests_per_s']} req/s) over {report['targets']} distinct requests; "
             f"slowest {report['slowest_s']} s; unexpected: {sum(report['unexpected'].values())}", "",
             "| request kind, status | count |", "|---|---|"]
    lines += [f"| {kind} | {n} |" for kind, n in report["statuses"].items()]
    lines += ["", f"| process | RSS start MB | RSS end MB | slope after {report['warmup_s']:.0f} s, MB/min |",
              "|---|---|---|---|"]
    lines += [f"| {name} | {m['rss_start_mb']} | {m['rss_end_mb']} | {m['slope_mb_per_min']} |"
              for name, m in report["memory"].items()]
    kill = report["kill"]
    lines += ["", f"kill -9 of worker {kill['killed_pid']} under load: every worker READY again after "
              f"{kill['ready_after_s']} s; {kill['requests']} requests, failed: {kill['failed'] or 'none'}; "
              f"slowest {kill['slowest_s']} s"]
    return "\n".join(lines) + "\n"


def main() -> int:
    images = load_raw(ensure_mnist(REPO / "data"), train=False)[0].numpy()[:300]
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(ARCHIVE, Path(tmp))
        load = mixed_targets(worker, digit_targets(worker, images), hostile=300)
    with serving() as server:
        print(f"[soak] {SECONDS} s, {CONCURRENCY} clients, {len(load)} distinct requests, then kill -9 a worker",
              flush=True)
        report = soak(server, load, SECONDS, CONCURRENCY, SAMPLE_SECONDS, min(WARMUP_SECONDS, SECONDS / 2))
        report["kill"] = kill_during_load(server, [t for t in load if t.request.kind == "digit"], CONCURRENCY)
    reasons = failed(report, MAX_SLOPE) + kill_failed(report["kill"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps({**report, "max_slope": MAX_SLOPE, "failed": reasons}, indent=2))
    (OUT / "report.md").write_text(markdown(report))
    print(markdown(report) + f"[soak] wrote {OUT}/report.json, report.md")
    for reason in reasons:
        print(f"[soak] FAILED: {reason}", file=sys.stderr)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
