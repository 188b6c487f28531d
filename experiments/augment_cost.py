"""What one training step's augmentation costs, part by part, beside the network's own pass:
the current training/augment.py or an earlier version of it (docs/robustness.md, "Stroke
augmentation and outlier exposure").

    PYTHONPATH=. python experiments/augment_cost.py
    git show 61bf15d:training/augment.py > /tmp/augment_old.py     # before the pool of scribbles
    PYTHONPATH=. python experiments/augment_cost.py --augment /tmp/augment_old.py

Mean ms over 300 steps of 64 training digits, with torch's default threads (as `make train`):
the affine and elastic augmentation, the stroke changes at config/training.yaml's shares, the 8
outlier images of a step, and LeNet-5's forward and backward pass with Adam's step. Where the
version draws its scribbles once per training, that draw is timed on its own.
"""
import argparse
import importlib.util
import time

import torch
import torch.nn.functional as F

from configuration import training_config
from model.lenet5 import LeNet5
from model.preprocess import MEAN, STD, to_model_input
from training.data import ensure_mnist, load_digits
from training.train import AUGMENT_KEYS, PEN_DRAWINGS, STROKE_KEYS

STEPS, BATCH, OUTLIERS = 300, 64, 8


def load(path: str):
    spec = importlib.util.spec_from_file_location("augment_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_ms(step) -> float:
    started = time.perf_counter()
    for i in range(STEPS):
        step(i)
    return (time.perf_counter() - started) / STEPS * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augment", default="training/augment.py", help="the augment.py to time")
    args = parser.parse_args()
    augmentation = load(args.augment)
    cfg = training_config()
    digits, labels = load_digits(ensure_mnist("data"), train=True)
    x = to_model_input(digits)
    generator = torch.Generator().manual_seed(0)
    batch = lambda i: x[i * BATCH:(i + 1) * BATCH]   # noqa: E731
    augment_args = {key: cfg[key] for key in AUGMENT_KEYS}
    stroke_args = {key: cfg[key] for key in STROKE_KEYS}

    if hasattr(augmentation, "pen_pool"):
        started = time.perf_counter()
        pool = augmentation.pen_pool(PEN_DRAWINGS, letters=cfg["not_digit_letters"], mean=MEAN, std=STD,
                                     generator=generator)
        print(f"{PEN_DRAWINGS} pen drawings drawn once: {time.perf_counter() - started:.2f} s")
        turnable = x[~torch.isin(labels, torch.tensor(augmentation.UNTURNABLE))]
        quarter = OUTLIERS // 4
        outliers = lambda i: augmentation.not_digits(   # noqa: E731
            batch(i)[:2 * quarter], turnable[i * quarter:(i + 1) * quarter], pool, mean=MEAN, std=STD,
            generator=generator)
    else:
        outliers = lambda i: augmentation.not_digits(batch(i)[:2 * OUTLIERS], mean=MEAN, std=STD,   # noqa: E731
                                                     generator=generator)
    assert len(outliers(0)) == OUTLIERS

    model = LeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def network(i):
        loss = F.cross_entropy(model(batch(i)), labels[i * BATCH:(i + 1) * BATCH])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    parts = {
        "affine + elastic": lambda i: augmentation.augment(batch(i), generator=generator, **augment_args),
        "stroke changes": lambda i: augmentation.strokes(batch(i), mean=MEAN, std=STD, generator=generator,
                                                         **stroke_args),
        f"{OUTLIERS} outliers": outliers,
        "forward + backward": network,
    }
    print(f"{args.augment}, {torch.get_num_threads()} torch threads, ms per step of {BATCH} digits:")
    for name, step in parts.items():
        print(f"  {name:<20} {mean_ms(step):.2f}")

if __name__ == "__main__":
    main()
