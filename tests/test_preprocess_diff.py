"""`make preprocess-diff` (training/preprocess_diff.py), the safety net for a change to
model/preprocess.py, keeps working: a revision loads as a module, and the normalizer compared
with itself on random templates differs nowhere. A few seconds: three random pages."""
import os
import subprocess
import sys

from configuration import REPO
from model import preprocess
from training.preprocess_diff import baseline_preprocess


def test_a_git_revision_loads_as_the_baseline():
    baseline = baseline_preprocess("HEAD")
    assert baseline is not preprocess and callable(baseline.prepare) and callable(baseline.normalize_digit)


def test_the_normalizer_against_itself_differs_nowhere():
    run = subprocess.run([sys.executable, "-m", "training.preprocess_diff", str(REPO / "model" / "preprocess.py"),
                          "--only-random", "--random", "3", "--seed", "1"],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=300, check=True)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:5]]
            for line in run.stdout.splitlines() if line.startswith("| empty") or line.startswith("| with a digit")}
    assert set(rows) == {"empty, refused", "with a digit, read right"}
    for baseline, this, baseline_only in rows.values():
        assert baseline == this and baseline_only == "0"
