"""What a change to model/preprocess.py changes, image by image: this tree's normalizer against
another revision's (`make preprocess-diff`, docs/robustness.md), run before committing any
change to preprocessing.

    make preprocess-diff                                    # against main, 300 per user style
    make preprocess-diff BASE=HEAD~1 COUNT=50 PAGES=100
    python -m training.preprocess_diff main --only-random --seed 8

For the 10,000 MNIST test digits, the first `--count` test digits per user style and the
independent sets (`training.eval_sets`; the held-out `printed` only with `--held-out`): how
many normalized digits differ (and the first ones' indices) and how many images each version
refuses. Then flat templates as a drawing app makes them, grey lines with or without a digit
on them: whether each version refuses them, and how far the digit it reads lies from the plain
digit's normalization (mean grey levels). Last, `--random` random flat templates (page size,
line count, spacing, width, grey, tilt, ruled or squared), each empty and with a random MNIST
test digit pasted at a random size and place: how many empty ones each version refuses, and how
many digits `--weights` reads right (and how many of those only the baseline does).
"""
import argparse
import importlib.util
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from configuration import REPO, handler_settings
from model import preprocess as this_preprocess
from model.errors import RequestError
from model.inference import load_model
from model.preprocess import to_model_input
from training import eval_sets
from training.data import ensure_mnist, load_raw
from training.evaluate import predict, style_sets
from training.user_styles import encode, paste_digit, ruled_page

# (page size, ruled lines, squared columns, line width, grey, tilt in px); the 160x120 ones are
# tests/test_preprocess.py's template
TEMPLATES = [((280, 280), n, 0, width, 200, 0) for n in (2, 3) for width in (1, 2, 3)] \
    + [((160, 120), n, 0, width, 170, 3) for n in (2, 3) for width in (2, 3)] \
    + [((160, 120), 5, 0, 2, 170, 3), ((160, 120), 5, 7, 2, 170, 3)]


def template(size, lines, columns, width, grey, tilt, digit=None) -> bytes:
    """One of TEMPLATES, encoded, with `digit` centred at 70% of the page's height if given."""
    w, h = size
    first, step = (40, 60) if w > 200 else (8, 24)
    page = ruled_page(size, range(first, first + step * lines, step), range(8, 8 + 24 * columns, 24),
                      width, grey, tilt)
    if digit is not None:
        side = int(0.7 * min(w, h))
        paste_digit(page, digit, (w - side) // 2, (h - side) // 2, side)
    return encode(page)


def random_template(rng: np.random.Generator) -> Image.Image:
    """A flat template no test was made from: 120-500 px wide, 2-7 ruled lines (half the
    pages squared as well), 1-4 px wide, grey 140-229, tilted up to 7 px across the page."""
    w = int(rng.integers(120, 500))
    h = int(w * rng.uniform(0.6, 1.4))
    lines, columns = int(rng.integers(2, 7)), int(rng.integers(0, 8)) if rng.random() < 0.5 else 0
    width, grey, tilt = int(rng.integers(1, 5)), int(rng.integers(140, 230)), int(rng.integers(0, 8))
    step = h // (lines + 1)
    offset = int(rng.integers(0, step // 2 + 1))
    column_step = w // (columns + 1)
    return ruled_page((w, h), range(offset + step // 2, h, step),
                      range(offset + column_step // 2, w, column_step) if columns else (), width, grey, tilt)


def random_templates(versions, digits, labels, count: int, seed: int, weights: str, max_pixels: int) -> None:
    """Print how many of `count` random templates each version refuses empty, and how many
    digits drawn on them `weights` reads right."""
    model = load_model(weights)
    rng = np.random.default_rng(seed)
    refused, right, lost = [0, 0], [0, 0], [0, 0]    # lost: refused / read right by the baseline only
    for _ in range(count):
        page = random_template(rng)
        empty = encode(page)
        i = int(rng.integers(len(digits)))
        side = int(rng.uniform(0.4, 0.8) * min(page.size))
        corner = int(rng.integers(page.width - side)), int(rng.integers(page.height - side))
        paste_digit(page, digits[i], *corner, side)
        with_digit = encode(page)
        empty_refused, digit_right = [], []
        for preprocess in versions:
            empty_refused.append(normalized(preprocess, empty, max_pixels) is None)
            digit = normalized(preprocess, with_digit, max_pixels)
            digit_right.append(digit is not None and bool(
                predict(model, to_model_input(torch.from_numpy(digit[None]))).argmax() == labels[i]))
        for v in (0, 1):
            refused[v] += empty_refused[v]
            right[v] += digit_right[v]
        lost[0] += empty_refused[0] and not empty_refused[1]
        lost[1] += digit_right[0] and not digit_right[1]
    print(f"\n{count} random templates (seed {seed}) | baseline | this | baseline only\n|---|---|---|---|")
    print(f"| empty, refused | {refused[0]} | {refused[1]} | {lost[0]} |")
    print(f"| with a digit, read right | {right[0]} | {right[1]} | {lost[1]} |")


def baseline_preprocess(base: str):
    """model/preprocess.py as the git revision `base` has it (or the file at that path), loaded as a module."""
    with tempfile.TemporaryDirectory(prefix="preprocess-diff-") as tmp:
        path = Path(base)
        if not path.is_file():
            path = Path(tmp) / "preprocess_base.py"
            path.write_bytes(subprocess.run(["git", "show", f"{base}:model/preprocess.py"], cwd=REPO, check=True,
                                            capture_output=True).stdout)
        spec = importlib.util.spec_from_file_location("preprocess_base", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def normalized(preprocess, data: bytes, max_pixels: int):
    try:
        return preprocess.prepare(data, max_pixels)
    except RequestError:    # a refusal (a crash is no refusal: it stops the comparison)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="main",
                        help="the git revision (or the path of a preprocess.py) to compare with")
    parser.add_argument("--count", type=int, default=300, help="test digits per user style")
    parser.add_argument("--random", type=int, default=300, help="random templates")
    parser.add_argument("--seed", type=int, default=8, help="of the random templates")
    parser.add_argument("--weights", default=str(REPO / "artifacts" / "lenet5_mnist.pt"),
                        help="reads the random templates' digits")
    parser.add_argument("--only-random", action="store_true", help="measure the random templates only")
    parser.add_argument("--held-out", action="store_true", help="count changes on the held-out `printed` set too")
    args = parser.parse_args()
    versions = baseline_preprocess(args.base), this_preprocess
    max_pixels = handler_settings()["max_pixels"]
    root = ensure_mnist(REPO / "data")
    digits, labels = (a.numpy() for a in load_raw(root, train=False))
    if not args.only_random:
        every_set(versions, digits, root, args.count, max_pixels, args.held_out)
    random_templates(versions, digits, labels, args.random, args.seed, args.weights, max_pixels)


def every_set(versions, digits, root, count: int, max_pixels: int, held_out: bool) -> None:
    """The evaluation sets' (with `printed` if `held_out`) and the fixed templates' tables."""
    sets = {"mnist": [encode(Image.fromarray(a)) for a in digits]}
    sets.update({f"user_styles/{name}": images for name, (images, _) in style_sets(root, count).items()})
    sets["other_writers"] = [data for data, _ in eval_sets.other_writers()]
    sets["second_camera"] = [data for data, _ in eval_sets.second_camera(root)]
    sets["not_digits"] = [data for data, _ in eval_sets.not_digits(root)]
    if held_out:
        sets["printed"] = [data for data, _ in eval_sets.printed()]
    print("| set | images | changed | refused: baseline | refused: this | first changed |\n|---|---|---|---|---|---|")
    for name, images in sets.items():
        changed, refused = [], [0, 0]
        for i, data in enumerate(images):
            old, new = (normalized(p, data, max_pixels) for p in versions)
            refused[0] += old is None
            refused[1] += new is None
            if (old is None) != (new is None) or (old is not None and not np.array_equal(old, new)):
                changed.append(i)
        print(f"| {name} | {len(images)} | {len(changed)} | {refused[0]} | {refused[1]} | {changed[:10]} |", flush=True)

    print("\n| template (size, lines, columns, width, grey, tilt) | digit | baseline | this |\n|---|---|---|---|")
    for spec in TEMPLATES:
        for digit in (None, digits[0]):
            plain = None if digit is None else versions[1].normalize_digit(Image.fromarray(digit)).astype(float)
            cells = []
            for preprocess in versions:
                out = normalized(preprocess, template(*spec, digit=digit), max_pixels)
                cells.append("refused" if out is None else "answered" if plain is None
                             else f"{np.abs(out - plain).mean():.1f} from the plain digit")
            print(f"| {spec} | {'MNIST test 0' if digit is not None else '-'} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
