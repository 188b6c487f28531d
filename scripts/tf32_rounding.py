"""How far TF32 moves the answers and the explanations: the basis of the GPU check's tolerances.

    python -m scripts.tf32_rounding            # 1,000 test digits, 32 explanations

On a GPU of compute capability 8.0 or later, cuDNN runs float32 convolutions in TF32 by default,
and TorchServe's base handler sets float32 matmul precision "high", so matmuls do too: operands
rounded to 10 mantissa bits, products accumulated in float32. This runs the trained LeNet-5 on
the CPU with every convolution's and linear layer's operands rounded that way (gradients passed
straight through) against plain float32, over the serving preprocessing, and prints the largest
probability difference, whether any digit changed, and how far the Integrated Gradients maps
moved (relative L2), as scripts/gpu_check.py compares CUDA with the CPU.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from PIL import Image

from handler.explain import METHOD
from model.inference import load_model, probabilities, served_temperature
from model.preprocess import MNIST_SIZE, prepare, to_model_input
from training.data import ensure_mnist, load_raw

WEIGHTS = "artifacts/lenet5_mnist.pt"
TF32_DROPPED_BITS = 13   # float32 keeps 23 mantissa bits, TF32 10


def tf32(x: torch.Tensor) -> torch.Tensor:
    """x rounded to the nearest TF32 value; the gradient passes straight through."""
    bits = x.detach().contiguous().view(torch.int32)
    rounded = ((bits + (1 << (TF32_DROPPED_BITS - 1))) & ~((1 << TF32_DROPPED_BITS) - 1)).view(torch.float32)
    return x + (rounded - x).detach()


class TF32LeNet(torch.nn.Module):
    """The same network and weights, its convolutions and linear layers fed TF32 operands."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.layers = list(model.features) + list(model.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if isinstance(layer, torch.nn.Conv2d):
                x = F.conv2d(tf32(x), tf32(layer.weight), layer.bias)
            elif isinstance(layer, torch.nn.Linear):
                x = F.linear(tf32(x), tf32(layer.weight), layer.bias)
            else:
                x = layer(x)
        return x


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1000)
    parser.add_argument("--explain", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="Integrated Gradients steps (config/model-config.yaml)")
    args = parser.parse_args(argv)
    model = load_model(WEIGHTS)
    rounded = TF32LeNet(model)
    temperature = served_temperature(WEIGHTS)
    images = load_raw(ensure_mnist("data"), train=False)[0][:args.digits].numpy()
    inputs = to_model_input(torch.from_numpy(np.stack([prepare(Image.fromarray(a)) for a in images])))
    with torch.no_grad():
        p = probabilities(model, inputs, temperature)
        q = probabilities(rounded, inputs, temperature)
    top2 = p.sort(dim=1).values[:, -2:]
    print(f"{args.digits} digits: max |dp| {(p - q).abs().max():.2e}, digits changed "
          f"{int((p.argmax(1) != q.argmax(1)).sum())}, smallest top-2 margin {(top2[:, 1] - top2[:, 0]).min():.3f}")
    blank = to_model_input(torch.zeros(1, MNIST_SIZE, MNIST_SIZE, dtype=torch.uint8))
    x, targets = inputs[:args.explain], p[:args.explain].argmax(1).tolist()
    maps = [IntegratedGradients(m).attribute(x, baselines=blank, target=targets, n_steps=args.steps, method=METHOD)
            for m in (model, rounded)]
    moved = [float((a - b).norm() / a.norm()) for a, b in zip(*maps)]
    print(f"{args.explain} explanations: relative L2 change max {max(moved):.2e}, median {np.median(moved):.2e}")


if __name__ == "__main__":
    main()
