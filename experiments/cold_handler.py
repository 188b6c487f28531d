"""What the same work costs when it runs back to back and when it runs after a pause.

    PYTHONPATH=. python experiments/cold_handler.py

A lone client's request reaches a TorchServe worker that has been idle for a whole request
cycle (the frontend hands lone requests to the workers in turn), while a single-process server
runs its next request right after the last. This times, in-process and on one thread, the
archive's handler driven by TorchServe's own worker code (harness.worker), the decode and
normalization alone, and the optimized forward pass alone: median wall time of 300 calls,
back to back, after a 2 ms and a 10 ms sleep, and after 10 ms spent spinning in Python instead
of sleeping (docs/performance.md, "A lone request").
"""
import statistics
import tempfile
import time
from pathlib import Path

import torch

from harness.server import ARCHIVE, REPO
from harness.worker import Request, Worker
from model.inference import probabilities
from model.preprocess import prepare, to_model_input

PNG = (REPO / "artifacts" / "samples" / "test00000-digit7.png").read_bytes()
PAUSES = {"back to back": (0, "sleep"), "2 ms sleep": (0.002, "sleep"), "10 ms sleep": (0.01, "sleep"),
          "10 ms spin": (0.01, "spin")}
CALLS = 300


def pause(seconds: float, how: str) -> None:
    if how == "sleep":
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def median_ms(call, seconds: float, how: str) -> float:
    times = []
    for _ in range(CALLS):
        pause(seconds, how)
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    worker = Worker(ARCHIVE, Path(tempfile.mkdtemp()))
    request = Request("png", PNG, "image/png")
    handler = worker.handler   # its optimized predictor, temperature and pixel cap, as it serves
    digit = to_model_input(torch.from_numpy(prepare(PNG, handler.max_pixels))[None])

    def forward():
        with torch.inference_mode():
            probabilities(handler.predictor, digit, handler.temperature)

    work = {"handler (TorchServe's worker code)": lambda: worker.answer(request),
            "decode + normalize": lambda: prepare(PNG, handler.max_pixels),
            "optimized forward pass": forward}
    print("| work | " + " | ".join(PAUSES) + " |")
    print("|---|" + "---|" * len(PAUSES))
    for name, call in work.items():
        for _ in range(50):
            call()
        print(f"| {name} | " + " | ".join(f"{median_ms(call, *p):.2f} ms" for p in PAUSES.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
