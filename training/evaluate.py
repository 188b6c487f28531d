"""Test-set accuracy of any LeNet-5 state dict, measured the way the server predicts.

    python -m training.evaluate artifacts/lenet5_mnist.pt
    python -m training.evaluate artifacts/lenet5_mnist.pt --styles 2000

The model runs in eval mode (BatchNorm uses its running statistics) on the MNIST test
digits after the exact serving preprocessing (`model.preprocess`). `--styles N` also
re-draws the first N test digits the way users send them (`training.user_styles`), encodes
them as image files and decodes them as the handler does.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from model.lenet5 import LeNet5
from model.preprocess import decode_image, normalize_digit, to_model_input
from training.data import ensure_mnist, load_digits, load_raw
from training.user_styles import STYLES

MODEL_CONFIG = Path(__file__).resolve().parent.parent / "config" / "model-config.yaml"


@torch.inference_mode()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Logits for standardized inputs, in eval mode, restoring the model's mode afterwards."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return logits


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


def style_accuracy(model: torch.nn.Module, root, count: int, seed: int = 0) -> dict:
    """Accuracy on the first `count` test digits re-drawn in each user style."""
    max_pixels = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]["max_pixels"]
    images, labels = load_raw(root, train=False)
    images, labels = images[:count].numpy(), labels[:count]
    rng = np.random.default_rng(seed)
    result = {}
    for name, draw in STYLES.items():
        digits = np.stack([normalize_digit(decode_image(draw(a, rng), max_pixels)) for a in images])
        predicted = predict(model, to_model_input(torch.from_numpy(digits))).argmax(dim=1)
        result[name] = round((predicted == labels).float().mean().item(), 6)
    return result


def load_model(state_dict_path: str, device: str = "cpu") -> LeNet5:
    model = LeNet5()
    model.load_state_dict(torch.load(state_dict_path, map_location=device, weights_only=True))
    return model.to(device).eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict", help="path to a LeNet-5 state_dict (.pt)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--styles", type=int, default=0, metavar="N",
                        help="also measure the first N test digits drawn in each user style")
    args = parser.parse_args(argv)
    root = ensure_mnist(args.data_root)
    model = load_model(args.state_dict)
    digits, labels = load_digits(root, train=False)
    result = report(predict(model, to_model_input(digits)).argmax(dim=1), labels)
    if args.styles:
        result["user_style_accuracy"] = style_accuracy(model, root, args.styles)
    print(json.dumps({k: v for k, v in result.items() if k != "confusion_matrix"}))
    return result


if __name__ == "__main__":
    main()
