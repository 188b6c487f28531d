"""The training augmentation alters what it says, on the share it says, and its outlier images
hold no single digit."""
import torch

from model.preprocess import MEAN, STD, to_model_input
from training.augment import not_digits, pen_pool, strokes
from training.data import load_digits


def _digits(mnist_root, n=256):
    digits, labels = load_digits(mnist_root, train=True)
    return to_model_input(digits[:n]), labels[:n]


def _ink(x):
    return x * STD + MEAN


def test_strokes_alter_only_the_chosen_share_and_keep_full_contrast(mnist_root):
    x, _ = _digits(mnist_root)
    generator = torch.Generator().manual_seed(0)
    off = strokes(x, mean=MEAN, std=STD, thickness=0, blur=0, low_res=0, generator=generator)
    assert off is x
    out = strokes(x, mean=MEAN, std=STD, thickness=0.2, blur=0, low_res=0, generator=generator)
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert 0.1 < changed.float().mean() < 0.3
    assert torch.allclose(_ink(out).amax(dim=(1, 2, 3)), torch.ones(len(x)), atol=1e-5)
    blurred = strokes(x, mean=MEAN, std=STD, thickness=0, blur=1, low_res=0, generator=generator)
    assert ((_ink(blurred) > 0.05).sum(dim=(1, 2, 3)) > (_ink(x) > 0.05).sum(dim=(1, 2, 3))).all()


def test_outliers_are_pairs_turned_digits_and_pen_drawings(mnist_root):
    x, labels = _digits(mnist_root)
    generator = torch.Generator().manual_seed(0)
    pool = pen_pool(64, letters=0.5, mean=MEAN, std=STD, generator=generator)
    assert pool.shape == (64, 1, 32, 32)
    assert torch.allclose(_ink(pool).amax(dim=(1, 2, 3)), torch.ones(64), atol=1e-5)
    assert ((_ink(pool) > 0.5).float().mean(dim=(1, 2, 3)) < 0.4).all()     # pen lines, not blots
    letters = _ink(pool[32:]) > 0.3                      # the second half: letters fit to the digit box
    rows, cols = letters.any(dim=3).squeeze(1), letters.any(dim=2).squeeze(1)
    extent = lambda on: on.shape[1] - on.int().argmax(1) - on.flip(1).int().argmax(1)   # noqa: E731
    assert ((torch.maximum(extent(rows), extent(cols)) - 21).abs() <= 2).all()
    assert not letters[..., :4, :].any() and not letters[..., 28:, :].any()
    turnable = x[(labels != 0) & (labels != 1) & (labels != 8)][:4]
    out = not_digits(x[:8], turnable, pool, mean=MEAN, std=STD, generator=generator)
    assert out.shape == (4 + 4 + 8, 1, 32, 32)
    assert torch.equal(out[4:6], turnable[:2].rot90(1, dims=(2, 3)))
    assert torch.equal(out[6:8], turnable[2:].rot90(3, dims=(2, 3)))
    assert all(any(torch.equal(image, s) for s in pool) for image in out[8:])
    outside = _ink(out[:4])
    outside[:, :, 9:23, 6:26] = 0                       # two digits squeezed into a wide box
    assert outside.abs().max() < 1e-5 and (_ink(out[:4]) > 0.5).any(dim=3).any(dim=2).all()
