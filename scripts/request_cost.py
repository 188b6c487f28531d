"""What one costly request costs, alone on a server started as `make serve` starts it, and where.

    python -m scripts.request_cost [--repeat 3]

Many-part bodies: about 7 MiB of multipart/form-data in 1,000 to 100,000 fields, sent with a
valid key to the model (the whole path), to a model that does not exist (the frontend decodes
the form before it looks the model up, so this is its decoding alone), and through nginx
(deploy/nginx/, refused by guard.js); our handler's share is read from its DigitLatencyDeciseconds
histogram, and the worker's unpacking of that many parameters is timed in-process with
TorchServe's own codec (ts.protocol.otf_message_handler.retrieve_msg, from memory: over the
real socket it reads more slowly). Then the slowest
legal requests: the largest legal image (harness/hostile_load.largest_image), alone and
batchSize at once, and batches of explanations. Prints one line per case: min-max seconds.
"""
import argparse
import re
import struct
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from configuration import REPO, model_config
from harness.hostile_load import largest_image, many_parts_body
from harness.nginx import start_proxy, stop_proxy
from harness.server import free_ports, started_like_make_serve
from training.data import ensure_mnist, load_raw
from training.user_styles import mnist_png

BODY_BYTES = 7 * 2**20
BATCH = model_config()["batchSize"]


def padded_parts(fields: int) -> tuple[bytes, str]:
    """`fields` form fields whose values fill about BODY_BYTES."""
    body, content_type = many_parts_body(fields)
    padding = max(0, (BODY_BYTES - len(body)) // fields)
    if padding:
        part = f"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{'x' * (padding + 1)}\r\n".encode()
        body = part * fields + b"--b--\r\n"
    return body, content_type


def handler_seconds(server) -> float:
    """The sum of our handler's latency histogram (deciseconds), in seconds."""
    text = requests.get(f"{server.metrics}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^DigitLatencyDeciseconds_sum\{.*\} (\S+)$", text, re.M)) / 10


def unpacking_seconds(fields: int, repeat: int) -> list[float]:
    """TorchServe's worker codec reading one request of `fields` parameters from memory."""
    from ts.protocol.otf_message_handler import retrieve_msg
    from harness.worker import _Wire, _field

    value = bytes(BODY_BYTES // fields)
    frame = b"I" + _field(b"0") + struct.pack("!i", -1)
    frame += (_field(b"f") + _field(b"") + _field(value)) * fields + struct.pack("!i", -1) * 2
    return timed(lambda: retrieve_msg(_Wire(frame)), repeat)


def timed(call, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def line(name: str, times: list[float], extra: str = "") -> None:
    print(f"{name:58s} {min(times):6.2f}-{max(times):6.2f} s {extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    digit = mnist_png(load_raw(ensure_mnist(REPO / "data"), train=False)[0][0].numpy())
    with started_like_make_serve() as server:
        proxy = start_proxy(server.workdir / "config" / "config.properties", free_ports(1)[0], server_env=server.env)
        key = {"Authorization": f"Bearer {server.key()}"}
        try:
            for fields in (1_000, 10_000, 30_000, 100_000):
                body, content_type = padded_parts(fields)
                headers = {**key, "Content-Type": content_type}
                statuses = set()

                def send(url):
                    statuses.add(requests.post(url, data=body, headers=headers, timeout=60).status_code)
                size = f"{len(body) / 2**20:.1f} MiB"
                handler_before = handler_seconds(server)
                whole = timed(lambda: send(f"{server.inference}/predictions/mnist"), repeat)
                handler = (handler_seconds(server) - handler_before) / repeat
                line(f"{fields:>7,} fields, {size}: whole path", whole,
                     f"{sorted(statuses)}; handler {handler:.3f} s per request")
                line(f"{fields:>7,} fields: the worker's unpacking, in-process", unpacking_seconds(fields, repeat))
                statuses.clear()
                line(f"{fields:>7,} fields: frontend decoding (unknown model)",
                     timed(lambda: send(f"{server.inference}/predictions/nope"), repeat), str(sorted(statuses)))
                statuses.clear()
                line(f"{fields:>7,} fields: through nginx", timed(lambda: send(f"{proxy.url}/predictions/mnist"), repeat),
                     str(sorted(statuses)))
            image = largest_image()
            statuses = Counter()

            def send(endpoint: str, body: bytes) -> None:
                statuses[server.predict(body, endpoint=endpoint).status_code] += 1
            line(f"largest legal image ({len(image) / 2**10:.0f} KiB RGBA PNG), alone",
                 timed(lambda: send("predictions", image), repeat))
            for name, endpoint, body in [("largest legal image", "predictions", image),
                                         ("explanation", "explanations", digit)]:
                statuses.clear()
                with ThreadPoolExecutor(BATCH) as pool:
                    line(f"{name} x{BATCH} at once", timed(lambda: list(pool.map(lambda _: send(endpoint, body),
                                                                                   range(BATCH))), repeat),
                         f"statuses {dict(statuses)} (429: past the batch's pixel or explanation budget)")
            line("one digit", timed(lambda: server.predict(digit).raise_for_status(), repeat))
        finally:
            stop_proxy(proxy)


if __name__ == "__main__":
    main()
