"""Driving a real TorchServe with a known mix of requests, and watching it while it runs.

Each `Target` is a request with the answer TorchServe's worker code gives it in-process
(harness/worker.py), so every answer over HTTP is checked exactly; `drive` sends a load from
many clients and tallies what came back; `soak` does that for a while and samples the
frontend's and workers' memory; `kill_during_load` kills a worker with kill -9 mid-load.
`make soak` (scripts/soak.py) and the abuse, security and server tests share this code.
"""
import itertools
import json
import os
import random
import re
import signal
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import psutil
import requests

from configuration import max_request_size, model_config
from harness.server import Server
from harness.hostile import hostile_requests, sample
from harness.worker import Request, Worker
from training.user_styles import mnist_png

MODEL_CONFIG = model_config()
RESPONSE_TIMEOUT = MODEL_CONFIG["responseTimeout"]
MAX_REQUEST_SIZE = max_request_size()
DEATH = re.compile(r"Worker disconnected|worker process died|Retry worker|OutOfMemoryError")


@dataclass(frozen=True)
class Target:
    """A request and what it must get: a status and the digit or error type (None: status only)."""

    request: Request
    status: int
    answer: str | None
    token: bool = True


def answer_of(status: int, body: bytes) -> str:
    """The digit of a 200, the error type of a JSON error, else ''."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    return str(parsed.get("digit" if status == 200 else "type", ""))


def expect(worker: Worker, request: Request) -> Target:
    """`request` with the answer the in-process worker gives it. The digit a hostile image
    happens to get is not compared: on noise, batching may break a near-tie either way."""
    answer = worker.answer(request)
    compared = request.kind == "digit" or answer.status != 200
    return Target(request, answer.status, answer_of(answer.status, answer.body) if compared else None)


def digit_targets(worker: Worker, images: np.ndarray) -> list[Target]:
    return [expect(worker, Request("digit", mnist_png(a), "image/png")) for a in images]


def mixed_targets(worker: Worker, digits: list[Target], hostile: int, seed: int = 0) -> list[Target]:
    """`digits`, `hostile` fuzzed requests and the two frontend refusals, shuffled."""
    with warnings.catch_warnings():   # Pillow's notes on the corrupt and huge images
        warnings.simplefilter("ignore")
        found = digits + [expect(worker, r) for r in sample(hostile_requests(), hostile)]
    found.append(Target(Request("no token", digits[0].request.body, "image/png"), 400, "InvalidKeyException", False))
    found.append(Target(Request("over max_request_size", bytes(MAX_REQUEST_SIZE + 1)), 413, None))
    random.Random(seed).shuffle(found)
    return found


@dataclass
class Tally:
    """What the clients saw, aggregated (a 10-minute run sends hundreds of thousands of requests)."""

    started: float = field(default_factory=time.monotonic)
    deadline: float = float("inf")                          # clients stop sending here
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)     # "kind status" -> count
    unexpected: Counter = field(default_factory=Counter)   # "kind: got status/answer or error" -> count
    failures: list = field(default_factory=list)           # (seconds since start, what) of the first 200
    slowest_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, target: Target, status: int | None, answer: str, seconds: float, at: float) -> None:
        expected = status == target.status and (target.answer is None or answer == target.answer)
        with self.lock:
            self.sent += 1
            self.statuses[f"{target.request.kind} {status}"] += 1
            self.slowest_s = max(self.slowest_s, seconds)
            if not expected:
                what = f"{target.request.kind}: got {status} {answer!r}, expected {target.status} {target.answer!r}"
                self.unexpected[what] += 1
                if len(self.failures) < 200:
                    self.failures.append((round(at - self.started, 3), what))


def drive(server: Server, load: list[Target], concurrency: int, tally: Tally | None = None) -> Tally:
    """Send `load` from `concurrency` clients, round-robin until `tally.deadline` (another thread
    may move it), or each target once when there is no deadline."""
    tally = tally or Tally()
    key, url = server.key(), f"{server.inference}/predictions/mnist"
    order = itertools.count()

    def client():
        session = requests.Session()
        for i in order:
            if time.monotonic() >= tally.deadline or (tally.deadline == float("inf") and i >= len(load)):
                return
            target = load[i % len(load)]
            headers = {"Content-Type": target.request.content_type}
            if target.token:
                headers["Authorization"] = f"Bearer {key}"
            started = time.monotonic()
            try:
                response = session.post(url, data=target.request.body, headers=headers, timeout=RESPONSE_TIMEOUT + 5)
                status, answer = response.status_code, answer_of(response.status_code, response.content)
            except requests.RequestException as error:
                status, answer = None, error.__class__.__name__
                session = requests.Session()
            tally.add(target, status, answer, time.monotonic() - started, started)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def frontend_counters(server: Server) -> Counter:
    """TorchServe's Requests2XX/4XX/5XX counters from /metrics."""
    return metric_sums(server, r"^(Requests[245]XX)\{.*\} (\S+)$")


def requests_per_model(server: Server) -> Counter:
    """TorchServe's inference requests taken per model name (ts_inference_requests_total)."""
    return metric_sums(server, r'^ts_inference_requests_total\{model_name="([^"]+)".*\} (\S+)$')


def metric_sums(server: Server, line: str) -> Counter:
    """The values of the /metrics lines matching `line`, summed per its first group."""
    text = requests.get(f"{server.metrics}/metrics", timeout=10).text
    found = Counter()
    for name, value in re.findall(line, text, re.M):
        found[name] += int(float(value))
    return found


def worker_deaths(server: Server) -> list[str]:
    """Lines of TorchServe's logs that say a worker died or was restarted."""
    return [line for name in ("ts_log.log", "model_log.log") for line in server.log(name).splitlines()
            if DEATH.search(line)]


class Sampler(threading.Thread):
    """Samples the RSS (MB) of the frontend and of each worker every `every` seconds until stopped."""

    def __init__(self, server: Server, every: float):
        super().__init__(daemon=True)
        self.server, self.every, self.halt = server, every, threading.Event()
        self.started = time.monotonic()
        self.samples: list[dict] = []   # {"t": seconds, "frontend": MB, "worker <pid>": MB, ...}

    def run(self):
        while not self.halt.is_set():
            frontend, workers = self.server.processes()
            sample_ = {"t": round(time.monotonic() - self.started, 1)}
            for name, process in [("frontend", frontend)] + [(f"worker {p.pid}", p) for p in workers]:
                try:
                    sample_[name] = round(process.memory_info().rss / 2**20, 1)
                except psutil.NoSuchProcess:   # a worker that just died
                    pass
            self.samples.append(sample_)
            self.halt.wait(self.every)

    def stop(self) -> list[dict]:
        self.halt.set()
        self.join()
        return self.samples


def slopes(samples: list[dict], warmup: float) -> dict[str, dict]:
    """Per process: RSS at the start and end, and the least-squares slope past `warmup`, MB/min."""
    result = {}
    for name in dict.fromkeys(k for s in samples for k in s if k != "t"):
        series = [(s["t"], s[name]) for s in samples if name in s]
        steady = np.array([(t / 60, mb) for t, mb in series if t >= warmup])
        slope = float(np.polyfit(steady[:, 0], steady[:, 1], 1)[0]) if len(steady) >= 3 else None
        result[name] = {"rss_start_mb": series[0][1], "rss_end_mb": series[-1][1],
                        "slope_mb_per_min": None if slope is None else round(slope, 3)}
    return result


def soak(server: Server, load: list[Target], seconds: float, concurrency: int, every: float, warmup: float) -> dict:
    """Drive `load` for `seconds` while sampling memory; the run's report (see failed())."""
    pids = sorted(p.pid for p in server.processes()[1])
    deaths_before, counters_before = len(worker_deaths(server)), frontend_counters(server)
    sampler = Sampler(server, every)
    sampler.start()
    tally = drive(server, load, concurrency, Tally(deadline=time.monotonic() + seconds))
    samples = sampler.stop()
    elapsed = time.monotonic() - tally.started
    return {"seconds": round(elapsed, 1), "concurrency": concurrency, "targets": len(load), "requests": tally.sent,
            "requests_per_s": round(tally.sent / elapsed, 1), "slowest_s": round(tally.slowest_s, 3),
            "statuses": dict(sorted(tally.statuses.items())), "unexpected": dict(tally.unexpected),
            "worker_pids_before": pids, "worker_pids_after": sorted(p.pid for p in server.processes()[1]),
            "worker_deaths_logged": worker_deaths(server)[deaths_before:], "warmup_s": warmup,
            "frontend_counters": dict(frontend_counters(server) - counters_before),
            "memory": slopes(samples, warmup), "samples": samples}


def failed(report: dict, max_slope: float) -> list[str]:
    """Why the run failed; empty when it passed."""
    reasons = [f"{n} x {what}" for what, n in report["unexpected"].items()]
    if report["worker_pids_before"] != report["worker_pids_after"] or report["worker_deaths_logged"]:
        reasons.append(f"workers restarted: {report['worker_pids_before']} -> {report['worker_pids_after']}, "
                       f"{report['worker_deaths_logged'][:3]}")
    reasons += [f"{name} RSS grows {m['slope_mb_per_min']} MB/min" for name, m in report["memory"].items()
                if m["slope_mb_per_min"] is not None and m["slope_mb_per_min"] > max_slope]
    if report["slowest_s"] > RESPONSE_TIMEOUT:
        reasons.append(f"a request took {report['slowest_s']} s, over responseTimeout")
    if report["frontend_counters"].get("Requests5XX"):
        reasons.append(f"TorchServe counted {report['frontend_counters']['Requests5XX']} 5xx answers")
    return reasons


def kill_failed(kill: dict) -> list[str]:
    """Why the kill -9 phase failed: the worker not replaced, a request failing once the model
    was READY again, or one taking longer than responseTimeout."""
    reasons = []
    if kill["killed_pid"] in [pid for pid, _ in kill["workers_after"]] or \
            any(status != "READY" for _, status in kill["workers_after"]):
        reasons.append(f"worker {kill['killed_pid']} not replaced: {kill['workers_after']}")
    reasons += [f"after READY, at {at} s: {what}" for at, what in kill["failures_s_after_kill"]
                if at > kill["ready_after_s"]]
    if kill["slowest_s"] > RESPONSE_TIMEOUT:
        reasons.append(f"a request took {kill['slowest_s']} s, over responseTimeout")
    return reasons


def describe(server: Server) -> list[dict]:
    """The model's workers as the management API describes them (id, pid, status)."""
    response = requests.get(f"{server.management}/models/mnist", timeout=5,
                            headers={"Authorization": f"Bearer {server.key('management')}"})
    return response.json()[0]["workers"]


def kill_during_load(server: Server, load: list[Target], concurrency: int, before: float = 3.0,
                     after: float = 3.0) -> dict:
    """`kill -9` one worker `before` s into a load; the load goes on until `after` s past the
    moment the management API shows every worker READY again, none of them the killed one."""
    tally = Tally(deadline=time.monotonic() + 120)
    deaths = len(worker_deaths(server))
    clients = threading.Thread(target=drive, args=(server, load, concurrency, tally))
    clients.start()
    time.sleep(before)
    victim = server.processes()[1][0].pid
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    while not (workers := describe(server)) or victim in {w["pid"] for w in workers} \
            or any(w["status"] != "READY" for w in workers):
        if time.monotonic() > tally.deadline:
            break
        time.sleep(0.1)
    ready = time.monotonic()
    tally.deadline = min(tally.deadline, ready + after)
    clients.join()
    return {"killed_pid": victim, "workers_after": [(w["pid"], w["status"]) for w in workers],
            "ready_after_s": round(ready - killed, 2), "requests": tally.sent, "slowest_s": round(tally.slowest_s, 3),
            "failed": dict(tally.unexpected), "statuses": dict(tally.statuses),
            "deaths_logged": worker_deaths(server)[deaths:],
            "failures_s_after_kill": [(round(at - (killed - tally.started), 3), what) for at, what in tally.failures]}


