"""Accuracy, refusals and calibration of any LeNet-5 state dict, measured the way the server answers.

    python -m training.evaluate artifacts/lenet5_mnist.pt                 # every set below
    python -m training.evaluate artifacts/lenet5_mnist.pt --sets mnist    # the MNIST test set only
    python -m training.evaluate a/lenet5_mnist.pt b/lenet5_mnist.pt       # several weights, same images

The model runs in eval mode (BatchNorm uses its running statistics) after the exact serving
preprocessing (`model.preprocess`) and at the softmax temperature recorded beside the weights
(`metrics.json`), as the handler does. The sets:

- `mnist`: the 10,000 MNIST test digits;
- `user_styles`: the first `--count` test digits redrawn by `training.user_styles` (the
  development set the preprocessing was built against), per style and in total;
- `other_writers`, `second_camera`, `printed`, `not_digits`: `training.eval_sets`, never
  tuned on (`printed` was held out until the end); `not_digits` per kind and in total;
- `page_photos`: `training.page_photos`, held out: photographed pages, per kind, then its digits
  and its no-digit pages in total.

Every generated image is encoded as a file and decoded as the handler decodes it. For each set
the table gives accuracy (a refused digit counts as wrong), the share refused with 422, the
expected calibration error of the answers and the number of wrong answers with confidence
>= 0.95; for images holding no digit, the share refused or answered below 0.5 confidence; for
every set, the preprocessing's time per image (decoding included, one process).
"""
import argparse
import json
import time

import numpy as np
import torch

from configuration import handler_settings
from model.inference import calibrated, load_model, served_temperature
from model.errors import RequestError
from model.preprocess import prepare, to_model_input
from training import eval_sets, page_photos
from training.data import ensure_mnist, load_digits, load_raw
from training.user_styles import USER_STYLES

CONFIDENT = 0.95      # a wrong answer at least this confident is counted on its own
UNSURE = 0.5          # a non-digit answered below this confidence is harmless
SET_NAMES = ("mnist", "user_styles", *eval_sets.SETS, *eval_sets.HELD_OUT, *eval_sets.NOT_DIGITS, "page_photos")


@torch.inference_mode()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Logits for standardized inputs, in eval mode, restoring the model's mode afterwards."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return logits


def calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: |confidence - accuracy| averaged over confidence bins."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        members = (confidence > lo) & (confidence <= hi)
        if members.any():
            error += members.float().mean() * (confidence[members].mean() - correct[members].mean()).abs()
    return round(float(error), 6)


def report(predicted: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true digit)."""
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((labels.cpu(), predicted.cpu()), torch.ones_like(labels.cpu()), accumulate=True)
    per_class = confusion.diag() / confusion.sum(dim=1)
    return {
        "test_accuracy": round(confusion.diag().sum().item() / len(labels), 6),
        "errors": int(len(labels) - confusion.diag().sum()),
        "per_class_accuracy": [round(v, 6) for v in per_class.tolist()],
        "confusion_matrix": confusion.tolist(),
    }


def prepared(images: list) -> tuple[list, list]:
    """The handler's preprocessing of encoded images: the normalized digits of those it answers
    and the refusal type of each image (None where answered)."""
    max_pixels = handler_settings()["max_pixels"]
    digits, refusals = [], []
    for data in images:
        try:
            digits.append(prepare(data, max_pixels))
            refusals.append(None)
        except RequestError as error:
            refusals.append(error.reason)
    return digits, refusals


def answers(model: torch.nn.Module, temperature: float, digits: list, refusals: list) -> torch.Tensor:
    """The served probabilities of `prepared` images: a NaN row where refused."""
    probabilities = torch.full((len(refusals), 10), float("nan"))
    answered = torch.tensor([r is None for r in refusals])
    if digits:
        logits = predict(model, to_model_input(torch.from_numpy(np.stack(digits))))
        probabilities[answered] = calibrated(logits, temperature)
    return probabilities


def served(model: torch.nn.Module, temperature: float, images: list) -> tuple[torch.Tensor, list]:
    """What the handler answers for encoded images: probabilities (a NaN row where refused) and
    the refusal type of each image (None where answered)."""
    digits, refusals = prepared(images)
    return answers(model, temperature, digits, refusals), refusals


def digit_set_report(probabilities: torch.Tensor, refusals: list, labels: torch.Tensor) -> dict:
    """Accuracy counting refusals as wrong, refusal rate, calibration error and confident errors."""
    answered = ~probabilities.isnan().any(dim=1)
    confidence, predicted = probabilities[answered].max(dim=1)
    wrong = predicted != labels[answered]
    return {
        "count": len(labels),
        "accuracy": round((~wrong).sum().item() / len(labels), 6),
        "refused": round(1 - answered.float().mean().item(), 6),
        "refusal_types": sorted({r for r in refusals if r}),
        "calibration_error": calibration_error(probabilities[answered], labels[answered]) if answered.any() else None,
        "wrong_above_0.95": int((wrong & (confidence >= CONFIDENT)).sum()),
        # how many of those a calibrated model gets wrong: each answer is wrong 1 - confidence of the time
        "expected_wrong_above_0.95": round((1 - confidence[confidence >= CONFIDENT]).sum().item(), 1),
    }


def non_digit_report(probabilities: torch.Tensor, refusals: list) -> dict:
    """How many images holding no single digit were refused or answered below 0.5."""
    answered = ~probabilities.isnan().any(dim=1)
    unsure = answered & (probabilities.nan_to_num(0).max(dim=1).values < UNSURE)
    return {
        "count": len(refusals),
        "refused": round(1 - answered.float().mean().item(), 6),
        "refusal_types": sorted({r for r in refusals if r}),
        "answered_below_0.5": round(unsure.float().mean().item(), 6),
        "refused_or_below_0.5": round(((~answered) | unsure).float().mean().item(), 6),
    }


def labelled_report(labels: list):
    """The report of images with these labels: a digit set's, or a non-digit set's where None."""
    if labels[0] is None:
        return non_digit_report
    labels = torch.tensor(labels)
    return lambda probabilities, refusals: digit_set_report(probabilities, refusals, labels)


def style_sets(root, count: int, seed: int = 0, styles=tuple(USER_STYLES)) -> dict:
    """{style: (images, labels)}: the first `count` test digits drawn in each of `styles` (every
    user style by default); a style draws the same images whichever others are chosen."""
    images, labels = load_raw(root, train=False)
    images, labels = images[:count].numpy(), labels[:count]
    result = {}
    for index, (name, draw) in enumerate(USER_STYLES.items()):
        if name in styles:
            rng = np.random.default_rng([seed, index])
            result[name] = ([draw(a, rng) for a in images], labels)
    return result


def style_accuracy(model: torch.nn.Module, root, count: int, seed: int = 0, temperature: float = 1.0) -> dict:
    """Accuracy on the first `count` test digits drawn in each user style (refusals count as wrong)."""
    return {name: digit_set_report(*served(model, temperature, images), labels)["accuracy"]
            for name, (images, labels) in style_sets(root, count, seed).items()}


def evaluate_sets(models: dict, root, names, count: int, styles=tuple(USER_STYLES)) -> dict:
    """{model name: {set name: its report}} for the named sets (`SET_NAMES`), `user_styles` in
    `styles`; `models` maps names to (model, temperature). Each image is preprocessed once."""
    results = {name: {} for name in models}

    def score(set_name, digits, refusals, report, seconds):
        for model_name, (model, temperature) in models.items():
            results[model_name][set_name] = {**report(answers(model, temperature, digits, refusals), refusals),
                                             "ms_per_image": round(1000 * seconds, 2)}

    def measure(set_name, images, report):
        start = time.perf_counter()
        digits, refusals = prepared(images)
        seconds = (time.perf_counter() - start) / len(images)
        score(set_name, digits, refusals, report, seconds)
        return digits, refusals, seconds

    if "user_styles" in names:
        everything, every_label = [], []
        for style, (images, labels) in style_sets(root, count, styles=styles).items():
            measure(f"user_styles/{style}", images, lambda p, r, labels=labels: digit_set_report(p, r, labels))
            everything += images
            every_label.append(labels)
        labels = torch.cat(every_label)
        measure("user_styles", everything, lambda p, r: digit_set_report(p, r, labels))
    makers = {**eval_sets.SETS, **eval_sets.HELD_OUT}
    for name in (n for n in names if n in makers):
        images, labels = zip(*makers[name](root))
        measure(name, list(images), lambda p, r, labels=torch.tensor(labels): digit_set_report(p, r, labels))
    for name in (n for n in names if n in eval_sets.NOT_DIGITS):
        images, kinds = zip(*eval_sets.NOT_DIGITS[name](root))
        for kind in dict.fromkeys(kinds):
            mine = [i for i, k in enumerate(kinds) if k == kind]
            measure(f"{name}/{kind}", [images[i] for i in mine], non_digit_report)
        measure(name, list(images), non_digit_report)
    if "page_photos" in names:   # each photo is preprocessed once: the totals reuse its kind's
        items = page_photos.page_photos(root)
        pooled = {"digits": ([], [], []), "not_digits": ([], [], [])}   # digits, refusals, labels
        seconds = {"digits": 0.0, "not_digits": 0.0}
        for kind in dict.fromkeys(kind for _, _, kind in items):
            images = [image for image, _, k in items if k == kind]
            labels = [label for _, label, k in items if k == kind]
            part = "not_digits" if labels[0] is None else "digits"
            digits, refusals, per_image = measure(f"page_photos/{kind}", images, labelled_report(labels))
            for pool, new in zip(pooled[part], (digits, refusals, labels)):
                pool.extend(new)
            seconds[part] += per_image * len(images)
        for part, (digits, refusals, labels) in pooled.items():
            score(f"page_photos/{part}", digits, refusals, labelled_report(labels), seconds[part] / len(refusals))
    return results


def print_table(sets: dict) -> None:
    print("| set | images | accuracy | refused | calibration error | wrong >= 0.95 | refused or < 0.5 | ms per image |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in sets.items():
        if "accuracy" in r:
            ece = "-" if r["calibration_error"] is None else f"{r['calibration_error']:.3f}"
            print(f"| {name} | {r['count']} | {r['accuracy']:.2%} | {r['refused']:.2%} | {ece} | "
                  f"{r['wrong_above_0.95']} | - | {r['ms_per_image']:.1f} |")
        else:
            print(f"| {name} | {r['count']} | - | {r['refused']:.2%} | - | - | {r['refused_or_below_0.5']:.2%} | "
                  f"{r['ms_per_image']:.1f} |")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dicts", nargs="+", metavar="state_dict",
                        help="paths to LeNet-5 state_dicts (.pt); several are measured on the same images")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--sets", nargs="+", choices=SET_NAMES, default=list(SET_NAMES),
                        help="which sets to measure (default: all)")
    parser.add_argument("--count", type=int, default=1000,
                        help="test digits drawn in each user style (default 1000)")
    parser.add_argument("--styles", nargs="+", choices=list(USER_STYLES), default=list(USER_STYLES),
                        help="which user styles to draw (default: all)")
    args = parser.parse_args(argv)
    root = ensure_mnist(args.data_root)
    models = {path: (load_model(path), served_temperature(path)) for path in args.state_dicts}
    results = {path: {} for path in models}
    if "mnist" in args.sets:
        digits, labels = load_digits(root, train=False)
        for path, (model, _) in models.items():
            results[path] = report(predict(model, to_model_input(digits)).argmax(dim=1), labels)
    sets = evaluate_sets(models, root, args.sets, args.count, args.styles)
    for path, result in results.items():
        if len(models) > 1:
            print(f"\n{path}")
        if result:
            print(json.dumps({k: v for k, v in result.items() if k != "confusion_matrix"}))
        if sets[path]:
            print_table(sets[path])
            result["sets"] = sets[path]
    return results


if __name__ == "__main__":
    main()
