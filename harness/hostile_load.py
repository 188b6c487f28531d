"""Hostile clients beside good ones, against a real TorchServe directly or through nginx.

Every client has its own loopback address (127.0.0.x), as separate machines would, so nginx's
per-address limits see 16 clients; each hostile client runs in a process of its own, so that
its work cannot hold the good clients' measuring thread back. The good clients each send a real MNIST digit at most
GOOD_RATE times a second (a person at the page sends far fewer) and check its answer. The
hostile ones loop, each with one kind of abuse: many-part bodies, the largest legal image,
explanation floods, uploads that trickle their body, connections that open and never send.
`make hostile` (scripts/hostile.py) runs it for a minute; tests/test_hostile_load.py for seconds.
"""
import http.client
import io
import multiprocessing
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from configuration import handler_settings
from harness.load import answer_of, worker_deaths
from harness.server import Server

GOOD_CLIENTS = 8
GOOD_RATE = 4                    # digits per second per good client, at most
MANY_PARTS = 100_000             # tiny form fields in one body (about 7 MiB)
TRICKLE_BYTES, TRICKLE_EVERY_S = 64, 1.0   # a slow upload's pace
SILENT_CONNECTIONS = 64          # per silent client, reopened when the server closes them
TIMEOUT_S = 30                   # a client gives up on an answer after this long
HOSTILE_KINDS = ["many_parts", "many_parts", "largest_image", "largest_image",
                 "explanation_flood", "explanation_flood", "slow_upload", "silent"]
P99_TARGET_S = 1.0
MEMORY_TARGET_MB = 100


def address(index: int) -> str:
    """The loopback address client `index` sends from."""
    return f"127.0.0.{10 + index}"


def many_parts_body(fields: int = MANY_PARTS) -> tuple[bytes, str]:
    """A multipart/form-data body of `fields` one-byte fields, and its content type."""
    boundary = "b"
    part = f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n".encode()
    return part * fields + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def largest_image(pixels: int = handler_settings()["max_pixels"]) -> bytes:
    """A digit on an RGBA PNG of `pixels` (handler.max_pixels, the most a request may decode): of
    legal images the one that costs a worker most (alpha is judged as well as colour), yet a
    small body."""
    side = int(pixels ** 0.5)
    page = Image.new("RGBA", (side, side), (235, 235, 235, 255))
    ImageDraw.Draw(page).line([(side * 0.45, side * 0.2), (side * 0.55, side * 0.8)], fill=(20, 20, 20, 255),
                              width=side // 40)
    encoded = io.BytesIO()
    page.save(encoded, "PNG")
    return encoded.getvalue()


@dataclass
class Target:
    """Where the clients send: host, port and the inference key."""

    host: str
    port: int
    key: str

    def connect(self, source: str) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S, source_address=(source, 0))


@dataclass
class Record:
    """What the clients saw: each good request's status and latency, the hostile ones' statuses."""

    good: list = field(default_factory=list)        # (status, right answer, seconds, sent at)
    hostile: Counter = field(default_factory=Counter)   # "kind status type" -> count
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_hostile(self, kind: str, status) -> None:
        with self.lock:
            self.hostile[f"{kind} {status}"] += 1


def post(connection: http.client.HTTPConnection, path: str, body: bytes, content_type: str, key: str):
    """One request on a kept-alive connection: (status, body)."""
    connection.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": content_type})
    response = connection.getresponse()
    return response.status, response.read()


def good_client(target: Target, source: str, digit: bytes, expected: str, deadline: float, record: Record):
    connection = target.connect(source)
    while (started := time.monotonic()) < deadline:
        try:
            status, body = post(connection, "/predictions/mnist", digit, "image/png", target.key)
            right = answer_of(status, body) == expected
        except (OSError, http.client.HTTPException) as error:
            status, right = error.__class__.__name__, False
            connection.close()
            connection = target.connect(source)
        seconds = time.monotonic() - started
        with record.lock:
            record.good.append((status, right, seconds, started))
        time.sleep(max(0.0, 1 / GOOD_RATE - seconds))
    connection.close()


def flooding_client(kind: str, path: str, body: bytes, content_type: str):
    """A hostile client that sends `body` again and again, as fast as it is answered."""
    def run(target: Target, source: str, deadline: float, record: Record):
        connection = target.connect(source)
        while time.monotonic() < deadline:
            try:
                status, answer = post(connection, path, body, content_type, target.key)
                status = f"{status} {answer_of(status, answer)}".strip()
            except (OSError, http.client.HTTPException) as error:
                status = error.__class__.__name__
                connection.close()
                connection = target.connect(source)
            record.add_hostile(kind, status)
        connection.close()
    return run


def slow_upload(target: Target, source: str, deadline: float, record: Record):
    """Announces a 1 MiB image and trickles it, TRICKLE_BYTES every TRICKLE_EVERY_S, on a new
    connection whenever the server closes the last one."""
    head = (f"POST /predictions/mnist HTTP/1.1\r\nHost: {target.host}\r\nAuthorization: Bearer {target.key}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {2**20}\r\n\r\n").encode()
    while time.monotonic() < deadline:
        with socket.create_connection((target.host, target.port), timeout=TIMEOUT_S, source_address=(source, 0)) as s:
            try:
                s.sendall(head)
                while time.monotonic() < deadline:
                    s.sendall(bytes(TRICKLE_BYTES))
                    time.sleep(TRICKLE_EVERY_S)
                status = "still open"
            except OSError:
                status = "closed by server"
        record.add_hostile("slow_upload", status)


def silent(target: Target, source: str, deadline: float, record: Record):
    """Holds SILENT_CONNECTIONS connections that never send a byte; counts those the server closes."""
    open_ = []
    while time.monotonic() < deadline:
        while len(open_) < SILENT_CONNECTIONS:
            s = socket.create_connection((target.host, target.port), timeout=TIMEOUT_S, source_address=(source, 0))
            s.setblocking(False)
            open_.append(s)
        for s in list(open_):
            try:
                closed = s.recv(1024) == b""
            except BlockingIOError:   # nothing to read: still open
                continue
            except OSError:
                closed = True
            if closed:
                s.close()
                open_.remove(s)
                record.add_hostile("silent", "closed by server")
        time.sleep(0.2)
    for s in open_:
        s.close()
    record.add_hostile("silent", f"still open x{len(open_)}")


def hostile_clients(digit: bytes, image_pixels: int) -> dict:
    """kind -> the client that does it."""
    parts, parts_type = many_parts_body()
    return {"many_parts": flooding_client("many_parts", "/predictions/mnist", parts, parts_type),
            "largest_image": flooding_client("largest_image", "/predictions/mnist", largest_image(image_pixels),
                                             "image/png"),
            "explanation_flood": flooding_client("explanation_flood", "/explanations/mnist", digit, "image/png"),
            "slow_upload": slow_upload, "silent": silent}


def hostile_process(client, target: Target, source: str, deadline: float, results) -> None:
    """One hostile client in a process of its own; what it saw goes back through `results`."""
    record = Record()
    client(target, source, deadline, record)
    results.put(dict(record.hostile))


def frontend_mb(server: Server) -> float:
    return round(server.processes()[0].memory_info().rss / 2**20, 1)


def warm_up(target: Target, digit: bytes) -> None:
    """Explanations from every good address at once, a few times: a worker's first explanation
    imports Captum (about 1 s, docs/performance.md) and holds its batch meanwhile; that start-up
    cost is not what the run measures."""
    def explain(index: int) -> None:
        connection = target.connect(address(index))
        post(connection, "/explanations/mnist", digit, "image/png", target.key)
        connection.close()
    for _ in range(3):
        threads = [threading.Thread(target=explain, args=(i,)) for i in range(GOOD_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def run(server: Server, target: Target, digit: bytes, expected: str, seconds: float, settle_s: float,
        image_pixels: int = handler_settings()["max_pixels"]) -> dict:
    """GOOD_CLIENTS good clients beside one hostile client per HOSTILE_KINDS entry for
    `seconds`, then `settle_s` of quiet; the report `failed` judges. The largest_image clients
    send `image_pixels` (by default the most the handler takes)."""
    hostile = hostile_clients(digit, image_pixels)
    warm_up(target, digit)
    pids = sorted(p.pid for p in server.processes()[1])
    deaths = len(worker_deaths(server))
    memory_before = frontend_mb(server)
    record, deadline = Record(), time.monotonic() + seconds
    clients = [threading.Thread(target=good_client, args=(target, address(i), digit, expected, deadline, record))
               for i in range(GOOD_CLIENTS)]
    forked = multiprocessing.get_context("fork")
    results = forked.Queue()
    clients += [forked.Process(target=hostile_process,
                               args=(hostile[kind], target, address(GOOD_CLIENTS + i), deadline, results))
                for i, kind in enumerate(HOSTILE_KINDS)]
    peak = memory_before
    for client in clients:
        client.start()
    while any(client.is_alive() for client in clients):
        peak = max(peak, frontend_mb(server))
        time.sleep(1)
    for _ in HOSTILE_KINDS:
        record.hostile.update(results.get(timeout=TIMEOUT_S))
    time.sleep(settle_s)
    latencies = np.array([seconds for _, _, seconds, _ in record.good])
    slowest = sorted(record.good, key=lambda good: -good[2])[:5]
    return {"seconds": seconds, "settle_s": settle_s, "image_pixels": image_pixels, "good_requests": len(record.good),
            "good_not_right": Counter(str(status) for status, right, _, _ in record.good if not right),
            "good_slowest_s_at_s": [(round(took, 2), round(at - deadline + seconds, 1)) for _, _, took, at in slowest],
            "good_p50_s": round(float(np.percentile(latencies, 50)), 3),
            "good_p99_s": round(float(np.percentile(latencies, 99)), 3),
            "good_max_s": round(float(latencies.max()), 3), "hostile": dict(sorted(record.hostile.items())),
            "worker_pids_before": pids, "worker_pids_after": sorted(p.pid for p in server.processes()[1]),
            "worker_deaths_logged": worker_deaths(server)[deaths:],
            "frontend_mb": {"before": memory_before, "peak": peak, "after": frontend_mb(server)}}


def failed(report: dict, p99: bool = True) -> list[str]:
    """Why a run missed the targets (with `p99`, the latency target too); empty when it met them."""
    reasons = [f"good clients got {dict(report['good_not_right'])}"] if report["good_not_right"] else []
    if report["worker_pids_before"] != report["worker_pids_after"] or report["worker_deaths_logged"]:
        reasons.append(f"workers restarted: {report['worker_pids_before']} -> {report['worker_pids_after']}")
    if p99 and report["good_p99_s"] > P99_TARGET_S:
        reasons.append(f"good clients' p99 {report['good_p99_s']} s > {P99_TARGET_S} s")
    memory = report["frontend_mb"]
    if memory["after"] - memory["before"] > MEMORY_TARGET_MB:
        reasons.append(f"frontend RSS {memory['before']} -> {memory['after']} MB after {report['settle_s']} s of quiet")
    return reasons
