"""Training learns, writes what it promises, and the evaluation CLI agrees with it."""
import json

import pytest
import torch

from configuration import training_config
from training import calibrate, evaluate, train


def test_short_training_run_learns_and_evaluates_consistently(tmp_path, mnist_root, capsys):
    cfg = train.parse_config(["--train-subset", "5000", "--epochs", "2", "--threads", "2",
                              "--data-root", str(mnist_root), "--out-dir", str(tmp_path)])
    metrics = train.train(cfg)
    assert metrics["test_accuracy"] > 0.93                   # chance is 0.10
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert 0.05 < metrics["temperature"] < 3 and metrics["test_calibration_error_after"] < 0.05
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert len(saved["confusion_matrix"]) == 10 and sum(map(sum, saved["confusion_matrix"])) == 10_000
    assert (tmp_path / "training.png").stat().st_size > 10_000
    assert "epoch   2" in capsys.readouterr().out

    weights = str(tmp_path / "lenet5_mnist.pt")
    result = evaluate.main([weights, "--data-root", str(mnist_root), "--sets", "mnist"])[weights]
    assert result["test_accuracy"] == metrics["test_accuracy"]
    assert result["per_class_accuracy"] == saved["per_class_accuracy"]


def test_config_flags_override_the_yaml():
    cfg = train.parse_config(["--epochs", "3", "--lr", "0.01"])
    assert (cfg["epochs"], cfg["lr"], cfg["batch_size"]) == (3, 0.01, training_config()["batch_size"])


def test_temperature_recovers_a_known_miscalibration():
    """Logits drawn so that softmax(logits) is calibrated, then sharpened 2x: T comes out 2."""
    torch.manual_seed(0)
    logits = torch.randn(20_000, 10) * 3
    labels = torch.multinomial(logits.softmax(dim=1), 1).squeeze(1)
    assert calibrate.fit_temperature(logits * 2, labels) == pytest.approx(2.0, rel=0.05)
    probabilities = (logits * 2).softmax(dim=1)
    assert evaluate.calibration_error(probabilities, labels) > 5 * evaluate.calibration_error(
        logits.softmax(dim=1), labels)
