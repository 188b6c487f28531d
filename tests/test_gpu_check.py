"""The GPU check (scripts/gpu_check.py) as it runs on a machine without a GPU, small: it must not rot
between the rare runs on a GPU. It runs as a command, from a bundle of the archive and real MNIST
test digits that scripts/gpu_bundle.py builds (without wheels: this environment has TorchServe,
Captum and Java), and starts a real TorchServe of its own."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DIGITS = 40


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    tmp = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    subprocess.run([sys.executable, "-m", "scripts.gpu_bundle", "--dest", str(tmp / "bundle"), "--digits",
                    str(DIGITS), "--no-wheels"], cwd=REPO, env=env, check=True, capture_output=True)
    run = subprocess.run([sys.executable, "-m", "scripts.gpu_check", "--bundle", str(tmp / "bundle"),
                          "--out", str(tmp / "out"), "--explain", "4", "--batches", "1,16", "--seconds", "0.3"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return run, json.loads((tmp / "out" / "report.json").read_text())


def test_it_passes_and_says_what_it_skipped(check):
    run, report = check
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    verdicts = {name: result for name, result, _ in report["verdicts"]}
    assert "FAIL" not in verdicts.values()
    if torch.cuda.is_available():
        assert verdicts["CUDA answers equal the CPU's"] == "PASS"
    else:
        assert "no GPU" in run.stdout
        assert verdicts["CUDA answers equal the CPU's"] == verdicts["CUDA explanations equal the CPU's"] == "SKIPPED"


def test_the_cpu_parts_ran(check):
    _, report = check
    assert report["environment"]["torch"] == torch.__version__ and report["environment"]["torch_pinned"]
    assert report["accuracy_cpu" if "answers" not in report else "answers"]
    assert all(r["ok"] for r in report["refusals"]["cpu"]) and len(report["refusals"]["cpu"]) >= 5
    explained = report["explanations"]["completeness"]["cpu"]
    assert (explained["maps"], explained["complete"], explained["problems"]) == (4, 4, {})
    for point, batch in zip(report["speed"]["points"], (1, 16)):
        assert point["batch"] == batch and point["cpu"]["images_per_s"] > 0
        assert 0 < point["cpu"]["normalizer_share"] < 1
    assert [p["processes"] for p in report["speed"]["normalizer_processes"]][0] == 1


def test_a_real_torchserve_answered_like_the_worker_in_process(check):
    _, report = check
    server = report["server"]
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert server["handler_log_devices"] == [device] == [server["device_in_process"]]
    assert server["predictions_200"] == server["same_digit"] == server["predictions"] > 0
    assert server["refusal"] == {"status": 400, "type": "not_an_image"}
    assert server["explanation_status"] == 200 and server["explanation_problems"] == []
