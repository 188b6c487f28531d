"""The average of each digit in MNIST's training set: what "why this digit and not that one?"
explanations compare a drawing with (handler/explain.py). scripts/archive.sh packs them into the
model archive, so the server needs no data set.

python -m training.digit_means OUT.npy   writes a (10, 28, 28) uint8 array, digit d at [d].
"""
import sys
from pathlib import Path

import numpy as np

from training.data import ensure_mnist, load_raw


def digit_means(root: str | Path) -> np.ndarray:
    """(10, 28, 28) uint8: pixel by pixel, the mean of each digit's training images, rounded."""
    images, labels = (t.numpy() for t in load_raw(root, train=True))
    return np.stack([images[labels == digit].mean(axis=0) for digit in range(10)]).round().astype(np.uint8)


if __name__ == "__main__":
    np.save(sys.argv[1], digit_means(ensure_mnist(Path("data"))))
