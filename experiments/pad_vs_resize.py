"""Measure how the 28x28 digit should become LeNet-5's 32x32 input: pad (LeCun et al.) or
resize (the original FastAPI project). Same recipe, seed and epochs for both; only the
28 -> 32 mapping differs, in training and in evaluation alike.

    PYTHONPATH=. python experiments/pad_vs_resize.py --epochs 6
"""
import sys

import torch.nn.functional as F

from model import preprocess
from training import train


def resize_to_model_input(digits):
    """The original project's mapping: bilinear resize 28 -> 32, then the same standardization."""
    x = F.interpolate(digits.unsqueeze(1).float().div(255), size=(32, 32), mode="bilinear", align_corners=False)
    return x.sub(preprocess.MEAN).div(preprocess.STD)


if __name__ == "__main__":
    results = {}
    for name, mapping in (("pad", preprocess.to_model_input), ("resize", resize_to_model_input)):
        metrics = train.train(train.parse_config(sys.argv[1:] + ["--out-dir", f"/tmp/pad_vs_resize/{name}"]), mapping)
        results[name] = metrics["test_accuracy"]
    print({name: f"{accuracy:.2%}" for name, accuracy in results.items()})
