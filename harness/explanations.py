"""What makes an explanation right: completeness of Integrated Gradients (handler/explain.py).

A complete map adds up to how far its target's logit moved from the blank page's. The handler
reports the remaining gap as `convergence_delta`; these are the bounds the tests and the GPU
check hold every map to.
"""
import numpy as np
import torch

from PIL import Image

from model.preprocess import prepare, to_model_input

SUM_ROUNDING = 2e-3    # 1,024 attributions travel rounded to 6 decimals
MAX_DELTA_SHARE = 0.1  # of the logit gap (of one logit when the gap is smaller: a 1 barely moves from blank)


def logit_gap(model: torch.nn.Module, image: np.ndarray, target: int) -> float:
    """logit_target(digit) - logit_target(blank page) of a raw 28x28 digit through the serving
    preprocessing, on the model's device: what a complete map of it sums to."""
    digits = torch.from_numpy(np.stack([prepare(Image.fromarray(image)), np.zeros_like(image)]))
    device = next(model.parameters()).device
    with torch.no_grad():
        digit, blank = model(to_model_input(digits).to(device))[:, target].tolist()
    return digit - blank


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
