"""Why the model chose a digit: Integrated Gradients over the exact tensor it saw.

Integrated Gradients (Sundararajan et al. 2017, Captum's implementation) rather than plain
gradients, DeepLift or Shapley sampling: it is deterministic, works on the unmodified model, and
is complete, so the attributions of a target add up to how far its logit moved from the
baseline's. That makes every map checkable (the answer carries the remaining gap as
`convergence_delta`), and on a 32x32 LeNet-5 its cost, `steps` forward and backward passes,
stays within milliseconds. The midpoint Riemann rule converged fastest on this network's
kinks (ReLU, max pooling) of the rules Captum offers: `python -m scripts.explain --measure`.

The baseline is a blank page as the model sees it: `to_model_input` of an all-background digit,
so attributions say what each pixel of ink contributed against no ink at all.
"""
import torch

from model.preprocess import MNIST_SIZE, to_model_input

METHOD = "riemann_middle"


class Explainer:
    """Attributions of chosen logits of `model` to each pixel of its (N, 1, 32, 32) inputs."""

    def __init__(self, model: torch.nn.Module, steps: int):
        self.model = model
        self.steps = steps
        self.baseline = to_model_input(torch.zeros(1, MNIST_SIZE, MNIST_SIZE, dtype=torch.uint8))
        self.integrated_gradients = None

    def __call__(self, inputs: torch.Tensor, targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 32, 32) attributions of logit targets[i] for inputs[i], and each map's completeness gap."""
        if self.integrated_gradients is None:
            # Imported at the first explanation, not at start: captum.attr imports matplotlib,
            # about 1 s of every worker's start (docs/performance.md, "Cold start").
            from captum.attr import IntegratedGradients
            self.integrated_gradients = IntegratedGradients(self.model)
        with torch.enable_grad():
            attributions, delta = self.integrated_gradients.attribute(
                inputs, baselines=self.baseline.to(inputs.device), target=targets, n_steps=self.steps,
                method=METHOD, return_convergence_delta=True)
        return attributions[:, 0].detach(), delta.detach()
