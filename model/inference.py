"""LeNet-5 as the server answers with it: the trained weights loaded, and the probabilities of a
batch of model inputs at the softmax temperature training fitted (`training.calibrate`, recorded
in metrics.json beside the weights and packed into the archive). The handler answers with these,
and training, tests and scripts that measure what it answers call the same ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from model.lenet5 import LeNet5

TRAINING_RECORD = "metrics.json"   # written by training beside the weights, packed into the archive


def load_model(weights: str | Path, device: str = "cpu") -> LeNet5:
    """LeNet-5 with a trained state_dict, in eval mode on `device`."""
    model = LeNet5()
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval()


def served_temperature(weights: str | Path) -> float:
    """The softmax temperature recorded beside `weights` (1 before calibration has recorded one)."""
    record = Path(weights).with_name(TRAINING_RECORD)
    return float(json.loads(record.read_text()).get("temperature", 1.0)) if record.exists() else 1.0


def calibrated(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the 10 digits: what the server answers for these logits."""
    return torch.softmax(logits / temperature, dim=1)


def probabilities(model: torch.nn.Module, inputs: torch.Tensor, temperature: float) -> torch.Tensor:
    """The answer to (N, 1, 32, 32) model inputs (as `to_model_input` makes them): (N, 10)."""
    return calibrated(model(inputs), temperature)


def answer(probabilities: list[float]) -> dict:
    """The answer's JSON fields for one image's 10 probabilities: the digit read, its confidence and
    all ten, to 6 decimals."""
    confidence = max(probabilities)
    return {"digit": probabilities.index(confidence), "confidence": round(confidence, 6),
            "probabilities": [round(p, 6) for p in probabilities]}
