"""Why the model chose a digit: Integrated Gradients over the exact tensor it saw.

Integrated Gradients (Sundararajan et al. 2017, Captum's implementation) rather than plain
gradients, DeepLift or Shapley sampling: it is deterministic, works on the unmodified model, and
is complete, so the attributions of a score add up to how far it moved from the baseline's.
That makes every map checkable (the answer carries the remaining gap as `convergence_delta`),
and on a 32x32 LeNet-5 its cost, `steps` forward and backward passes, stays within
milliseconds. The midpoint Riemann rule converged fastest on this network's kinks (ReLU, max
pooling) of the rules Captum offers: `python -m scripts.explain --measure`.

Two questions, one pass:
- "why this digit?": the target's logit, from a blank page (`to_model_input` of an all-background
  digit), so each pixel of ink says what it contributed against no ink at all; paper scores zero.
- "why this digit and not that one?" (`versus`): the target's logit minus the other digit's, from
  the average of the other digit in MNIST's training set (DIGIT_MEANS, in the archive). Empty
  paper where that average has ink scores too: where the other digit would have a stroke that
  the drawing lacks. From a blank page, paper would score zero and a missing stroke could not show.
"""
from __future__ import annotations

import torch

from model.preprocess import MNIST_SIZE, to_model_input

METHOD = "riemann_middle"
DIGITS = 10
DIGIT_MEANS = "digit_means.npy"   # (10, 28, 28) uint8, training/digit_means.py; packed in the archive


def score_weights(targets: list[int], versus: list[int | None]) -> torch.Tensor:
    """(N, 10) weights whose product with the logits is each row's score: +1 on the target's logit,
    -1 on the contrasted digit's."""
    weights = torch.zeros(len(targets), DIGITS)
    for row, (target, other) in enumerate(zip(targets, versus)):
        weights[row, target] = 1.0
        if other is not None:
            weights[row, other] = -1.0
    return weights


class Explainer:
    """Attributions of chosen scores of `model` to each pixel of its (N, 1, 32, 32) inputs;
    `digit_means` (10, 28, 28 uint8) are the baselines of contrasts, which need them."""

    def __init__(self, model: torch.nn.Module, steps: int, digit_means: torch.Tensor | None = None):
        self.model = model
        self.steps = steps
        self.baseline = to_model_input(torch.zeros(1, MNIST_SIZE, MNIST_SIZE, dtype=torch.uint8))
        self.contrast_baselines = None if digit_means is None else to_model_input(digit_means)
        self.integrated_gradients = None

    def _score(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (self.model(inputs) * weights).sum(dim=1)

    def __call__(self, inputs: torch.Tensor, targets: list[int],
                 versus: list[int | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 32, 32) attributions of logit targets[i] (minus logit versus[i], when given) for
        inputs[i], and each map's completeness gap."""
        versus = versus or [None] * len(targets)
        if self.integrated_gradients is None:
            # Imported at the first explanation, not at start: captum.attr imports matplotlib,
            # about 1 s of every worker's start (docs/performance.md, "Cold start").
            from captum.attr import IntegratedGradients
            self.integrated_gradients = IntegratedGradients(self._score)
        baselines = torch.cat([self.baseline if other is None else self.contrast_baselines[other:other + 1]
                               for other in versus])
        with torch.enable_grad():
            attributions, delta = self.integrated_gradients.attribute(
                inputs, baselines=baselines.to(inputs.device), n_steps=self.steps, method=METHOD,
                additional_forward_args=(score_weights(targets, versus).to(inputs.device),),
                return_convergence_delta=True)
        return attributions[:, 0].detach(), delta.detach()
