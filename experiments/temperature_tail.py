"""Whether any softmax temperature gives both calibrated answers and no confident wrong ones:
one row per temperature, the weights' own (from metrics.json) first (docs/robustness.md,
"Confident wrong answers").

    PYTHONPATH=. python experiments/temperature_tail.py artifacts/lenet5_mnist.pt --count 1000 \
        --strip docs/confident_wrong.png

Each set is preprocessed once and answered at every temperature (`training.evaluate`); per
digit set the calibration error and the wrong answers at >= 0.95 confidence (in brackets, how
many of those answers a calibrated model would get wrong: the sum of 1 - confidence), for the user
styles the worst single style's calibration error too, and the share of `not_digits` refused
or answered below 0.5. `--strip` saves the MNIST test digits answered wrong at >= 0.95 at the
weights' own temperature, most confident first, and prints their index, label and answer.
"""
import argparse

import numpy as np
from PIL import Image

from model.inference import calibrated, load_model, served_temperature
from model.preprocess import to_model_input
from training import eval_sets
from training.data import ensure_mnist, load_digits, load_raw
from training.evaluate import CONFIDENT, digit_set_report, evaluate_sets, predict
from training.user_styles import USER_STYLES

DIGIT_SETS = ("mnist", "user_styles", *eval_sets.SETS, *eval_sets.HELD_OUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict")
    parser.add_argument("--count", type=int, default=300, help="test digits per user style")
    parser.add_argument("--strip", help="a PNG file for the MNIST test digits answered wrong at >= 0.95")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.8, 0.9, 1.0, 1.2])
    args = parser.parse_args()
    root = ensure_mnist("data")
    model = load_model(args.state_dict)
    temperatures = [served_temperature(args.state_dict), *args.temperatures]
    models = {t: (model, t) for t in temperatures}
    names = ["user_styles", *eval_sets.SETS, *eval_sets.HELD_OUT, *eval_sets.NOT_DIGITS]
    results = evaluate_sets(models, root, names, args.count)
    digits, labels = load_digits(root, train=False)
    logits = predict(model, to_model_input(digits))
    for t in temperatures:
        results[t]["mnist"] = digit_set_report(calibrated(logits, t), [None] * len(labels), labels)
    if args.strip:
        save_confident_wrong(calibrated(logits, temperatures[0]), labels, root, args.strip)

    print("| T | " + " | ".join(f"{n}: ECE, wrong >= 0.95 (if calibrated)" for n in DIGIT_SETS) + " | worst style ECE | "
          + " | ".join(f"{n} refused or < 0.5" for n in eval_sets.NOT_DIGITS) + " |")
    print("|---" * (len(DIGIT_SETS) + len(eval_sets.NOT_DIGITS) + 2) + "|")
    for t, sets in results.items():
        cells = [f"{sets[n]['calibration_error']:.3f}, {sets[n]['wrong_above_0.95']} "
                 f"({sets[n]['expected_wrong_above_0.95']:.0f})" for n in DIGIT_SETS]
        worst = max(sets[f"user_styles/{s}"]["calibration_error"] for s in USER_STYLES)
        not_digits = [f"{sets[n]['refused_or_below_0.5']:.1%}" for n in eval_sets.NOT_DIGITS]
        print(f"| {t} | " + " | ".join(cells + [f"{worst:.3f}", *not_digits]) + " |")


def save_confident_wrong(probabilities, labels, root, path: str) -> None:
    """The MNIST test digits answered wrong at >= CONFIDENT, side by side, four times enlarged."""
    confidence, answer = probabilities.max(dim=1)
    wrong = ((answer != labels) & (confidence >= CONFIDENT)).nonzero().flatten().tolist()
    wrong.sort(key=lambda i: -confidence[i].item())
    images, _ = load_raw(root, train=False)
    for i in wrong:
        print(f"test digit {i}: label {labels[i].item()}, answered {answer[i].item()} at {confidence[i].item():.3f}")
    strip = np.concatenate([np.kron(images[i].numpy(), np.ones((4, 4), np.uint8)) for i in wrong], axis=1)
    Image.fromarray(255 - strip).save(path)


if __name__ == "__main__":
    main()
