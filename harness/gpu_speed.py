"""The GPU check's speed part (scripts/gpu_check.py): whole TorchServe batches in-process on each
device, where a batch's time goes, the model alone, and how the CPU-bound decode + normalize
scales with processes, as that many workers sharing one GPU would run them."""
import multiprocessing
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from harness.gpu_checks import png_requests
from harness.worker import Worker
from model.preprocess import prepare, to_model_input


class PhaseClock:
    """Wall time of each step of the handler's path while installed: decode and normalize (per
    image, on the CPU), the rest of preprocess (stacking, standardizing, the copy to the device),
    inference (forward, softmax, the copy back, which waits for the GPU) and postprocess (JSON)."""

    STEPS = ("decode", "normalize", "preprocess", "inference", "postprocess")

    def __init__(self, worker: Worker):
        self.handler = worker.handler
        self.module = sys.modules[prepare.__module__]   # the preprocessing module the handler calls
        self.seconds = dict.fromkeys(self.STEPS, 0.0)

    def _timed(self, name: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
        return timed

    def __enter__(self):
        self.functions = self.module.decode_image, self.module.normalize_digit   # the steps of its prepare()
        self.module.decode_image = self._timed("decode", self.functions[0])
        self.module.normalize_digit = self._timed("normalize", self.functions[1])
        for step in ("preprocess", "inference", "postprocess"):
            setattr(self.handler, step, self._timed(step, getattr(self.handler, step)))
        return self

    def __exit__(self, *exc):
        self.module.decode_image, self.module.normalize_digit = self.functions
        for step in ("preprocess", "inference", "postprocess"):
            delattr(self.handler, step)


def end_to_end(worker: Worker, pngs: list[bytes], batch: int, seconds: float) -> dict:
    """Images/s of whole TorchServe batches of `batch` PNG digits in-process, and ms per batch in each step."""
    same_batch = png_requests([pngs[i % len(pngs)] for i in range(batch)])
    worker.predict(same_batch)                        # warm-up: allocations, cuDNN's choice of kernels
    with PhaseClock(worker) as clock:
        started, batches = time.perf_counter(), 0
        while batches == 0 or time.perf_counter() - started < seconds:
            worker.predict(same_batch)
            batches += 1
        elapsed = time.perf_counter() - started
    ms = {step: 1000 * s / batches for step, s in clock.seconds.items()}
    ms["preprocess"] -= ms["decode"] + ms["normalize"]
    ms["torchserve"] = 1000 * elapsed / batches - sum(ms.values())   # codec, Service.predict, metrics
    return {"images_per_s": batch * batches / elapsed, "ms_per_batch": {k: round(v, 4) for k, v in ms.items()},
            "normalizer_share": (ms["decode"] + ms["normalize"]) * batches / 1000 / elapsed}


def model_alone(worker: Worker, digits: np.ndarray, batch: int, seconds: float) -> float:
    """Images/s of the handler's predictor on model inputs already on its device (no pre- or postprocessing)."""
    handler = worker.handler
    picked = digits[np.arange(batch) % len(digits)]
    inputs = to_model_input(torch.from_numpy(picked)).to(handler.device)
    sync = torch.cuda.synchronize if handler.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        handler.predictor(inputs)
        sync()
        started, batches = time.perf_counter(), 0
        while batches == 0 or time.perf_counter() - started < seconds:
            handler.predictor(inputs)
            batches += 1
        sync()
        elapsed = time.perf_counter() - started
    return batch * batches / elapsed


def _normalize_pngs(pngs: list[bytes], max_pixels: int, rounds: int, start, results) -> None:
    """In a child process: once every child is ready (`start`, a barrier), decode and normalize
    `pngs` `rounds` times; put (start, end, images) on `results`."""
    prepare(pngs[0], max_pixels)
    start.wait()
    started = time.time()
    for _ in range(rounds):
        for png in pngs:
            prepare(png, max_pixels)
    results.put((started, time.time(), rounds * len(pngs)))


def normalizer_scaling(pngs: list[bytes], max_pixels: int, seconds: float) -> list[dict]:
    """Images/s of decode + normalize in 1, a quarter of, and all CPU cores' processes at once, as
    that many TorchServe workers sharing one GPU would run them. Counted from the first process's
    start to the last one's end, so a late starter lowers the figure, never raises it."""
    started = time.perf_counter()
    for png in pngs:
        prepare(png, max_pixels)
    rounds = max(1, round(seconds / (time.perf_counter() - started)))
    # Forked, as PyTorch's DataLoader forks its workers: children that never touch CUDA may come from a
    # process that holds a CUDA context, and start in milliseconds where spawned ones import torch again.
    context = multiprocessing.get_context("fork")
    cores = os.cpu_count() or 1
    scaling = []
    for count in sorted({1, max(1, cores // 4), cores}):
        start, results = context.Barrier(count), context.Queue()
        processes = [context.Process(target=_normalize_pngs, args=(pngs, max_pixels, rounds, start, results))
                     for _ in range(count)]
        try:
            for process in processes:
                process.start()
            runs = [results.get(timeout=120 + 4 * seconds) for _ in processes]
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                if process.pid is not None:
                    process.join()
        span = max(end for _, end, _ in runs) - min(begin for begin, _, _ in runs)
        scaling.append({"processes": count, "images_per_s": sum(n for _, _, n in runs) / span})
    return scaling


def speed(workers: dict, pngs: list[bytes], digits: np.ndarray, batches: list[int], seconds: float,
          log: Callable[[str], None]) -> dict:
    points = []
    for batch in batches:
        point = {"batch": batch}
        for device, worker in workers.items():
            point[device] = {**end_to_end(worker, pngs, batch, seconds),
                             "model_alone_images_per_s": model_alone(worker, digits, batch, seconds)}
        points.append(point)
        log(f"batch {batch}: " + ", ".join(f"{d} {point[d]['images_per_s']:,.0f} images/s "
                                           f"(model alone {point[d]['model_alone_images_per_s']:,.0f})"
                                           for d in workers))
    scaling = normalizer_scaling(pngs[:64], workers["cpu"].handler.max_pixels, seconds)
    log("decode + normalize: " + ", ".join(f"{p['processes']} processes {p['images_per_s']:,.0f} images/s"
                                           for p in scaling))
    return {"torch_threads": torch.get_num_threads(), "points": points, "normalizer_processes": scaling}
