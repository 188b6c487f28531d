"""Explanations drawn and measured in-process with the serving code: the Explainer of
handler/explain.py, the inputs of model/preprocess.py and the handler settings of
config/model-config.yaml, on the trained weights.

python -m scripts.explain                  # heat maps of a right and a wrong test digit -> artifacts/explanations/
python -m scripts.explain --indices 0 247  # of these test digits
python -m scripts.explain --measure        # ms per explanation and convergence, per number of steps
"""
import argparse
import statistics
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch

from configuration import handler_settings
from handler.explain import Explainer
from harness.server import WEIGHTS
from model.inference import load_model, probabilities, served_temperature
from model.preprocess import to_model_input
from training.data import load_digits
from training.digit_means import digit_means
from training.evaluate import predict

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

SETTINGS = handler_settings()
EVERY_TARGET_DIGITS = 40    # digits whose maps --measure checks for all ten targets


def render(model, explainer, inputs, labels, index: int, temperature: float, out: Path) -> Path:
    """The normalized digit, then the map of the predicted digit, and of the true one if they differ."""
    x = inputs[index:index + 1]
    with torch.no_grad():
        answer = probabilities(model, x, temperature)[0]
    predicted, label = int(answer.argmax()), int(labels[index])
    targets = [predicted] if predicted == label else [predicted, label]
    attributions, _ = explainer(x.expand(len(targets), -1, -1, -1), targets)
    figure, axes = plt.subplots(1, 1 + len(targets), figsize=(2.6 * (1 + len(targets)), 2.9))
    digit = x[0, 0].numpy()
    axes[0].imshow(digit, cmap="gray")
    axes[0].set_title(f"test #{index}: a {label}\nas the model sees it", fontsize=9)
    limit = float(attributions.abs().max())
    for axis, target, attribution in zip(axes[1:], targets, attributions):
        axis.imshow(digit, cmap="gray", alpha=0.35)
        shown = axis.imshow(attribution.numpy(), cmap="bwr", vmin=-limit, vmax=limit, alpha=0.8)
        kind = "predicted" if target == predicted else "true label"
        axis.set_title(f"why {target}?\n{kind}, p={answer[target]:.3f}", fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    figure.colorbar(shown, ax=axes[1:].tolist(), shrink=0.8, label="attribution (logit)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"test{index:05d}-label{label}-predicted{predicted}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def measure(model, inputs, steps_list, count: int) -> None:
    """Median ms of one explanation (one thread, as a worker runs) and of a batch of as many as
    the server allows, and how far the maps fall short of completeness, per number of steps."""
    torch.set_num_threads(int(SETTINGS["torch_threads"]))
    x = inputs[:count]
    with torch.no_grad():   # every target's logit gap to the blank page, of as many digits as either part needs
        logits = model(inputs[:max(count, EVERY_TARGET_DIGITS)])
        all_gaps = (logits - model(Explainer(model, 1).baseline)).abs()
    targets = logits[:count].argmax(dim=1).tolist()
    gaps = all_gaps[range(count), targets]
    per_batch = int(SETTINGS["explain_max_per_batch"])
    print(f"{count} test digits, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    print("steps | ms per explanation (median) | ms per batch of", per_batch, "| |delta| median, p95, max | "
          "|delta| / max(|logit gap|, 1), median, max")
    for steps in steps_list:
        explainer = Explainer(model, steps)
        single = [_timed(explainer, x[i:i + 1], targets[i:i + 1]) for i in range(count)]
        batch = [_timed(explainer, x[i:i + per_batch], targets[i:i + per_batch]) for i in range(0, count, per_batch)]
        _, delta = explainer(x, targets)
        delta = delta.abs()
        relative = delta / gaps.clamp(min=1.0)
        print(f"{steps} | {statistics.median(single):.1f} | {statistics.median(batch):.1f} | "
              f"{delta.median():.3f}, {delta.quantile(0.95):.3f}, {delta.max():.3f} | "
              f"{relative.median():.3f}, {relative.max():.3f}")
    print(f"every target 0-9 of the first {EVERY_TARGET_DIGITS} digits (a named target converges slower): "
          "steps | |delta| / max(|logit gap|, 1), median, max | maps over 10%")
    x, gaps = inputs[:EVERY_TARGET_DIGITS], all_gaps[:EVERY_TARGET_DIGITS].clamp(min=1.0)
    for steps in steps_list:
        explainer = Explainer(model, steps)
        relative = torch.stack([explainer(x, [t] * len(x))[1].abs() / gaps[:, t] for t in range(10)])
        print(f"{steps} | {relative.median():.3f}, {relative.max():.3f} | {(relative > 0.1).sum()} of {relative.numel()}")
    means = torch.from_numpy(digit_means("data"))
    predicted = logits[:EVERY_TARGET_DIGITS].argmax(dim=1)
    pairs = [(row, int(predicted[row]), other) for row in range(len(x)) for other in range(10) if other != predicted[row]]
    rows, targets, versus = (list(column) for column in zip(*pairs))
    with torch.no_grad():   # each contrast's gap to its baseline, the average of the other digit
        contrast = lambda scores: scores[range(len(pairs)), targets] - scores[range(len(pairs)), versus]
        contrast_gaps = (contrast(logits[rows]) - contrast(model(to_model_input(means[versus])))).abs().clamp(min=1.0)
    print(f"the predicted digit of the first {EVERY_TARGET_DIGITS} digits versus each other digit: "
          "steps | |delta| / max(|gap|, 1), median, max | maps over 10%")
    for steps in steps_list:
        relative = Explainer(model, steps, means)(x[rows], targets, versus)[1].abs() / contrast_gaps
        print(f"{steps} | {relative.median():.3f}, {relative.max():.3f} | {(relative > 0.1).sum()} of {relative.numel()}")


def _timed(explainer, x, targets) -> float:
    started = time.perf_counter()
    explainer(x, targets)
    return (time.perf_counter() - started) * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indices", type=int, nargs="*", help="MNIST test digits (default: the first right and "
                                                                  "the first wrong one)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/explanations"),
                        help="folder for the pictures (default: artifacts/explanations, not tracked)")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--steps", type=int, nargs="*", default=[16, 32, 64, 128])
    parser.add_argument("--count", type=int, default=200, help="digits timed by --measure")
    args = parser.parse_args(argv)

    model = load_model(str(WEIGHTS))
    digits, labels = load_digits("data", train=False)
    inputs = to_model_input(digits)
    if args.measure:
        measure(model, inputs, args.steps, args.count)
        return
    temperature = served_temperature(WEIGHTS)
    indices = args.indices
    if not indices:
        with torch.no_grad():
            right = (predict(model, inputs).argmax(dim=1) == labels).numpy()
        indices = [int(np.flatnonzero(right)[0]), int(np.flatnonzero(~right)[0])]
    explainer = Explainer(model, int(SETTINGS["explain_steps"]))
    for index in indices:
        print(render(model, explainer, inputs, labels, index, temperature, args.out))


if __name__ == "__main__":
    main()
