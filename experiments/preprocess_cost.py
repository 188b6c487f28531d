"""What the preprocessing costs per image, in-process: decode_image + normalize_digit.

    PYTHONPATH=. python experiments/preprocess_cost.py
    git show main:model/preprocess.py > /tmp/preprocess_main.py   # another version, same inputs
    PYTHONPATH=. python experiments/preprocess_cost.py --baseline /tmp/preprocess_main.py

For each kind of input, 2,000 calls cycle over 100 different images of that kind (MNIST test
digits drawn by `training.user_styles`, or on flat ruled and squared templates by
`experiments.templates`); the median call time is printed, in milliseconds. One thread, as
each TorchServe worker runs. With --baseline, the two versions are timed in
alternating halves of 1,000 calls (baseline, this, this, baseline) on the same images, so that
both see the same load of a shared machine; the mean of the two half medians is printed for
each, and their ratio.
"""
import argparse
import importlib.util
import time

import numpy as np
import torch

from configuration import handler_settings
from experiments.templates import on_random_template
from training import user_styles
from training.data import load_raw

KINDS = {"mnist_png": user_styles.mnist_png, "transparent_canvas": user_styles.transparent_canvas,
         "photo_jpeg": user_styles.photo_jpeg, "large_off_centre": user_styles.large_off_centre,
         "frame_filling": user_styles.frame_filling, "low_resolution": user_styles.low_resolution,
         "lined_paper": user_styles.lined_paper, "noisy_page": user_styles.noisy_page,
         "ruled_template": on_random_template}
MAX_PIXELS = handler_settings()["max_pixels"]


def load_preprocess(path: str | None):
    if path is None:
        from model import preprocess
        return preprocess
    spec = importlib.util.spec_from_file_location("preprocess_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_ms(preprocess, images: list, calls: int) -> float:
    times = []
    for i in range(calls):
        data = images[i % len(images)]
        started = time.perf_counter()
        try:
            preprocess.normalize_digit(preprocess.decode_image(data, MAX_PIXELS))
        except ValueError:   # a refusal: RequestError here, ImageRejected in older versions
            pass
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preprocess", help="path of a preprocess.py to time (default: model/preprocess.py)")
    parser.add_argument("--baseline", help="path of another preprocess.py to time alongside, for the ratio")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="kinds of input to time (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preprocess = load_preprocess(args.preprocess)
    baseline = load_preprocess(args.baseline) if args.baseline else None
    digits = load_raw("data", train=False)[0][:100].numpy()
    for name in args.kinds:
        draw = KINDS[name]
        rng = np.random.default_rng(0)
        images = [draw(a, rng) for a in digits]
        if baseline is None:
            print(f"{name:20s} {median_ms(preprocess, images, args.calls):.3f} ms", flush=True)
            continue
        half = args.calls // 2
        first = median_ms(baseline, images, half)
        now = (median_ms(preprocess, images, half) + median_ms(preprocess, images, half)) / 2
        before = (first + median_ms(baseline, images, half)) / 2
        print(f"{name:20s} baseline {before:.3f} ms  this {now:.3f} ms  ratio {now / before:.2f}", flush=True)
