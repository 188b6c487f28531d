"""What makes an explanation right: completeness of Integrated Gradients (handler/explain.py).

A complete map adds up to how far its score moved from its baseline's: the target's logit from
the blank page's, or, contrasted with another digit, the gap between the two logits from that
digit's average's (training/digit_means.py). The handler reports the remaining gap as `convergence_delta`; these are the
bounds the tests and the GPU check hold every map to.
"""
import numpy as np
import torch

from PIL import Image

from model.preprocess import prepare, to_model_input

SUM_ROUNDING = 2e-3    # 1,024 attributions travel rounded to 6 decimals
MAX_DELTA_SHARE = 0.1  # of the logit gap (of one logit when the gap is smaller: a 1 barely moves from blank)


def logit_gap(model: torch.nn.Module, image: np.ndarray, target: int, versus: int | None = None,
              digit_means: np.ndarray | None = None) -> float:
    """What a complete map of a raw 28x28 digit (through the serving preprocessing, on the model's
    device) sums to: logit_target(digit) - logit_target(blank page), or, contrasted with `versus`,
    (logit_target - logit_versus)(digit) - (logit_target - logit_versus)(digit_means[versus])."""
    baseline = np.zeros_like(image) if versus is None else digit_means[versus]
    digits = torch.from_numpy(np.stack([prepare(Image.fromarray(image)), baseline]))
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(to_model_input(digits).to(device))
    scores = logits[:, target] - (0 if versus is None else logits[:, versus])
    return (scores[0] - scores[1]).item()


def incompleteness(answer: dict, gap: float) -> list[str]:
    """What is wrong with an explanation's completeness, empty when nothing is."""
    attributions = np.array(answer["attributions"])
    delta = answer["convergence_delta"]
    problems = []
    if attributions.shape != (32, 32):
        problems.append(f"attributions have shape {attributions.shape}, not 32x32")
    elif abs(attributions.sum() - gap - delta) > SUM_ROUNDING:
        problems.append(f"the map sums to {attributions.sum():.6f}, the logit gap is {gap:.6f}, "
                        f"but the reported delta is {delta}")
    if abs(delta) > MAX_DELTA_SHARE * max(abs(gap), 1.0):
        problems.append(f"convergence delta {delta} exceeds {MAX_DELTA_SHARE:.0%} of the logit gap {gap:.4f}")
    return problems
