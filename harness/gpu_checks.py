"""The GPU check's comparisons (scripts/gpu_check.py): the archive's handler, driven in-process by
TorchServe's own worker code (harness/worker.py) as a CPU worker and as a GPU worker, answers,
refuses and explains alike; and a real TorchServe on the same device answers like its worker.

CUDA runs convolutions (cuDNN's default) and, once TorchServe's base handler has set float32 matmul
precision "high", matmuls in TF32: 10 mantissa bits. The CPU's operands rounded that way moved the
1,000 digits' probabilities by 2.1e-3 at most and the maps of 32 by 3.4% (relative L2) at most
(python -m scripts.tf32_rounding); the tolerances are 2.4 and 3 times those.
"""
import base64
import concurrent.futures
import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.explanations import incompleteness, logit_gap
from harness.server import START, serving
from harness.worker import Request, Worker
from model.errors import HTTP_STATUS
from training.user_styles import encode, mnist_png

PROBABILITY_TOLERANCE = 5e-3    # absolute, per probability
ATTRIBUTION_TOLERANCE = 0.1     # |cuda - cpu|_2 / |cpu|_2 of a map
SERVER_READY_SECONDS = 180
# TorchServe from the bundle's wheels has no `torchserve` command on PATH: the same entry point as a module.
START_AS_MODULE = [sys.executable, "-m", "ts.model_server", *START[1:]]


def png_requests(pngs: list[bytes]) -> list[list[tuple[str, str, bytes]]]:
    return [[("body", "image/png", png)] for png in pngs]


def answer_all(worker: Worker, pngs: list[bytes], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(digits, probabilities) of every PNG, sent in TorchServe batches of `batch_size`."""
    answers = []
    for start in range(0, len(pngs), batch_size):
        answers += worker.predict(png_requests(pngs[start:start + batch_size]))
    refused = [(i, a.status) for i, a in enumerate(answers) if a.status != 200]
    if refused:
        raise AssertionError(f"MNIST test digits refused: {refused[:5]}")
    bodies = [a.json() for a in answers]
    return np.array([b["digit"] for b in bodies]), np.array([b["probabilities"] for b in bodies])


def compare_answers(cpu: tuple, cuda: tuple, labels: np.ndarray) -> dict:
    (cpu_digits, cpu_p), (cuda_digits, cuda_p) = cpu, cuda
    differ = np.flatnonzero(cpu_digits != cuda_digits)
    top2 = np.sort(cpu_p, axis=1)[:, -2:]
    return {"digits": len(labels), "same_digit": int((cpu_digits == cuda_digits).sum()),
            "different_digit": [{"index": int(i), "cpu": int(cpu_digits[i]), "cuda": int(cuda_digits[i]),
                                 "cpu_top2_margin": float(top2[i, 1] - top2[i, 0])} for i in differ],
            "max_probability_difference": float(np.abs(cpu_p - cuda_p).max()),
            "mean_probability_difference": float(np.abs(cpu_p - cuda_p).mean()),
            "accuracy_cpu": float((cpu_digits == labels).mean()),
            "accuracy_cuda": float((cuda_digits == labels).mean())}


def bad_requests(max_pixels: int, digit_png: bytes) -> list[tuple[str, Request, dict, str]]:
    """(what, request, headers, expected error type): one of each client mistake the handler names."""
    width = 5000
    oversized = Image.new("1", (width, max_pixels // width + 1))   # zeros: a small file over the pixel cap
    explained_target_12 = {"data": base64.b64encode(digit_png).decode(), "target": 12}
    return [
        ("empty body", Request("empty", b""), {}, "not_an_image"),
        ("a PDF", Request("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n"), {}, "not_an_image"),
        ("a blank page", Request("blank", mnist_png(np.zeros((28, 28), np.uint8)), "image/png"), {}, "no_digit_found"),
        (f"{oversized.width}x{oversized.height} pixels", Request("large", encode(oversized), "image/png"), {},
         "image_too_large"),
        ("broken base64", Request("json", b'{"data": "%%%"}', "application/json"), {}, "invalid_request"),
        ("explanation of target 12", Request("json", json.dumps(explained_target_12).encode(), "application/json"),
         {"explain": "True"}, "invalid_request"),
    ]


def refusals(worker: Worker, digit_png: bytes, digit: int) -> list[dict]:
    """Each bad request in a batch beside a good digit: its 4xx, and the digit its answer."""
    results = []
    for what, request, headers, expected in bad_requests(worker.handler.max_pixels, digit_png):
        good, bad = worker.predict([[("body", "image/png", digit_png)], [("body", request.content_type, request.body)]],
                                   headers=[{}, headers])
        body = bad.json()
        results.append({"input": what, "status": bad.status, "type": body.get("type"),
                        "expected_status": HTTP_STATUS[expected], "expected_type": expected,
                        "peer_digit": good.json().get("digit") if good.status == 200 else None,
                        "ok": (bad.status, body.get("type")) == (HTTP_STATUS[expected], expected)
                        and good.status == 200 and good.json()["digit"] == digit})
    return results


def explain_all(worker: Worker, pngs: list[bytes]) -> list[dict]:
    """Explanations of each PNG (its answer's digit), in batches of the archive's explain_max_per_batch."""
    per_batch = worker.handler.explain_max_per_batch
    answers = []
    for start in range(0, len(pngs), per_batch):
        chunk = png_requests(pngs[start:start + per_batch])
        answers += worker.predict(chunk, headers=[{"explain": "True"}] * len(chunk))
    if any(a.status != 200 for a in answers):
        raise AssertionError(f"explanations refused: {[a.status for a in answers]}")
    return [a.json() for a in answers]


def completeness(worker: Worker, images: np.ndarray, answers: list[dict]) -> dict:
    problems = {i: incompleteness(a, logit_gap(worker.handler.model, image, a["target"]))
                for i, (image, a) in enumerate(zip(images, answers))}
    return {"maps": len(answers), "complete": sum(not p for p in problems.values()),
            "max_abs_convergence_delta": max(abs(a["convergence_delta"]) for a in answers),
            "problems": {i: p for i, p in problems.items() if p}}


def compare_explanations(cpu: list[dict], cuda: list[dict]) -> dict:
    differences = []
    for a, b in zip(cpu, cuda):
        x, y = np.array(a["attributions"]), np.array(b["attributions"])
        differences.append(float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-12)))
    return {"maps": len(cpu), "same_target": sum(a["target"] == b["target"] for a, b in zip(cpu, cuda)),
            "max_relative_attribution_difference": max(differences),
            "within_tolerance": sum(d <= ATTRIBUTION_TOLERANCE for d in differences)}


@contextlib.contextmanager
def strict_fp32():
    """CUDA without TF32 (cuDNN convolutions, matmuls): what is left of a difference is no rounding mode's."""
    saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def gpu_processes() -> set[int] | None:
    """Pids nvidia-smi sees computing on a GPU; None where it cannot tell."""
    if not shutil.which("nvidia-smi"):
        return None
    listing = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True)
    return {int(p) for p in listing.stdout.split()} if listing.returncode == 0 else None


def served(archive: Path, site: Path | None, worker: Worker, images: np.ndarray, pngs: list[bytes],
           logs_to: Path) -> dict:
    """Predictions, one refusal and one explanation over HTTP from a real TorchServe (the archive and
    config/ as shipped, started through harness/server.py), against the in-process answers of the
    worker on the same device. Its model and frontend logs are copied to `logs_to`."""
    expected_digits, expected_p = answer_all(worker, pngs, len(pngs))
    expected_map = explain_all(worker, pngs[:1])[0]
    env = {"PYTHONPATH": str(site)} if site else {}
    if torch.cuda.is_available() and not shutil.which("nvidia-smi"):   # how the frontend counts GPUs
        env["TS_NUMBER_OF_GPU"] = str(torch.cuda.device_count())
    with serving(archive, START_AS_MODULE, env, timeout_s=SERVER_READY_SECONDS) as server:
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(server.predict, pngs))
            refused = server.predict(b"%PDF-1.4", content_type="application/octet-stream")
            explained = server.predict(pngs[0], endpoint="explanations")
            workers = {w.pid for w in server.processes()[1]}
            on_gpu = gpu_processes()
        finally:
            logs_to.mkdir(parents=True, exist_ok=True)
            for name in ("model_log.log", "ts_log.log"):
                (logs_to / name).write_text(server.log(name))
        model_log, frontend_log, ready_s = server.log(), server.log("ts_log.log"), server.ready_s
    ok = [a.status_code == 200 for a in answers]
    bodies = [a.json() for a in answers if a.status_code == 200]
    result = {
        "ready_s": round(ready_s, 1), "workers": len(workers), "device_in_process": str(worker.handler.device),
        "gpus_torchserve_counted": [int(n) for n in re.findall(r"Number of GPUs: (\d+)", frontend_log)],
        "handler_log_devices": sorted(set(re.findall(r"LeNet-5 answers on (\S+)", model_log))),
        "workers_seen_by_nvidia_smi": None if on_gpu is None else len(workers & on_gpu),
        "predictions": len(answers), "predictions_200": sum(ok),
        "same_digit": sum(b["digit"] == d for b, d in zip(bodies, expected_digits)) if all(ok) else 0,
        "max_probability_difference": float(np.abs(np.array([b["probabilities"] for b in bodies])
                                                   - expected_p).max()) if all(ok) else None,
        "refusal": {"status": refused.status_code, "type": refused.json().get("type")},
        "explanation_status": explained.status_code,
    }
    if explained.status_code == 200:
        answer = explained.json()
        result["explanation_problems"] = incompleteness(answer, logit_gap(worker.handler.model, images[0],
                                                                           answer["target"]))
        result["explanation_relative_difference"] = compare_explanations(
            [expected_map], [answer])["max_relative_attribution_difference"]
    return result
