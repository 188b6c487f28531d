"""How the original FastAPI app's preprocessing (grey, resize to 32x32, no inversion, cropping
or centring) fares on user-style images, with our trained weights, next to ours.

    PYTHONPATH=. python experiments/naive_preprocessing.py --count 2000
"""
import argparse
import io

import numpy as np
import torch
from PIL import Image

from model.inference import load_model
from model.preprocess import MEAN, STD
from training.data import load_raw
from training.evaluate import predict, style_accuracy
from training.user_styles import STYLES


def naive_input(data: bytes) -> torch.Tensor:
    img = Image.open(io.BytesIO(data)).convert("L").resize((32, 32))
    return (torch.from_numpy(np.asarray(img, np.float32) / 255) - MEAN) / STD


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--weights", default="artifacts/lenet5_mnist.pt")
    args = parser.parse_args()
    model = load_model(args.weights)
    images, labels = load_raw("data", train=False)
    images, labels = images[:args.count].numpy(), labels[:args.count]
    rng = np.random.default_rng(0)
    naive = {}
    for name, draw in STYLES.items():
        inputs = torch.stack([naive_input(draw(a, rng)) for a in images]).unsqueeze(1)
        naive[name] = (predict(model, inputs).argmax(dim=1) == labels).float().mean().item()
    ours = style_accuracy(model, "data", args.count)
    print("| style | naive resize | ours |\n|---|---|---|")
    for name in STYLES:
        print(f"| {name} | {naive[name]:.2%} | {ours[name]:.2%} |")
