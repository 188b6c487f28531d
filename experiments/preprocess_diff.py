"""What a change to the normalizer changes: model/preprocess.py against another version, image
by image, on every evaluation set and on flat ruled and squared templates.

    git show main:model/preprocess.py > /tmp/preprocess_main.py
    PYTHONPATH=. python experiments/preprocess_diff.py /tmp/preprocess_main.py --count 300

For the 10,000 MNIST test digits, the first `--count` test digits per user style and the
independent sets (`training.eval_sets`; `printed` stays held out): how many normalized digits
differ and how many images each version refuses. Then flat templates as a drawing app makes
them, grey lines with or without a digit on them: whether each version refuses them, and how
far the digit it reads lies from the plain digit's normalization (mean grey levels).
"""
import argparse

import numpy as np
from PIL import Image, ImageDraw

from configuration import handler_settings
from experiments.preprocess_cost import load_preprocess
from training import eval_sets
from training.data import ensure_mnist, load_raw
from training.evaluate import style_sets
from training.user_styles import encode

# (page size, ruled lines, squared columns, line width, grey, tilt in px); the 160x120 ones are
# tests/test_preprocess.py's template
TEMPLATES = [((280, 280), n, 0, width, 200, 0) for n in (2, 3) for width in (1, 2, 3)] \
    + [((160, 120), n, 0, width, 170, 3) for n in (2, 3) for width in (2, 3)] \
    + [((160, 120), 5, 0, 2, 170, 3), ((160, 120), 5, 7, 2, 170, 3)]


def template(size, lines, columns, width, grey, tilt, digit=None) -> bytes:
    w, h = size
    first, step = (40, 60) if w > 200 else (8, 24)
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    for y in range(first, first + step * lines, step):
        draw.line([(0, y), (w, y + tilt)], fill=grey, width=width)
    for x in range(8, 8 + 24 * columns, 24):
        draw.line([(x, 0), (x + tilt, h)], fill=grey, width=width)
    if digit is not None:
        side = int(0.7 * min(w, h))
        page.paste(0, ((w - side) // 2, (h - side) // 2), Image.fromarray(digit).resize((side, side), Image.BICUBIC))
    return encode(page)


def normalized(preprocess, data: bytes, max_pixels: int):
    try:
        return preprocess.prepare(data, max_pixels)
    except ValueError:      # a refusal
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="path of the other preprocess.py")
    parser.add_argument("--count", type=int, default=300, help="test digits per user style")
    args = parser.parse_args()
    versions = load_preprocess(args.baseline), load_preprocess(None)
    max_pixels = handler_settings()["max_pixels"]
    root = ensure_mnist("data")
    digits = load_raw(root, train=False)[0].numpy()
    sets = {"mnist": [encode(Image.fromarray(a)) for a in digits]}
    sets.update({f"user_styles/{name}": images for name, (images, _) in style_sets(root, args.count).items()})
    sets["other_writers"] = [data for data, _ in eval_sets.other_writers()]
    sets["second_camera"] = [data for data, _ in eval_sets.second_camera(root)]
    sets["not_digits"] = [data for data, _ in eval_sets.not_digits(root)]
    print("| set | images | changed | refused: baseline | refused: this |\n|---|---|---|---|---|")
    for name, images in sets.items():
        changed, refused = 0, [0, 0]
        for data in images:
            old, new = (normalized(p, data, max_pixels) for p in versions)
            refused[0] += old is None
            refused[1] += new is None
            changed += (old is None) != (new is None) or (old is not None and not np.array_equal(old, new))
        print(f"| {name} | {len(images)} | {changed} | {refused[0]} | {refused[1]} |", flush=True)

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
