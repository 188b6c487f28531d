"""Test-set accuracy of any LeNet-5 state dict, measured the way the server predicts.

    python -m training.evaluate artifacts/lenet5_mnist.pt

The model runs in eval mode (BatchNorm uses its running statistics) on the MNIST test
digits after the exact serving preprocessing (`model.preprocess`).
"""
import argparse
import json

import torch

from model.lenet5 import LeNet5
from model.preprocess import to_model_input
from training.data import ensure_mnist, load_digits


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


def load_model(state_dict_path: str, device: str = "cpu") -> LeNet5:
    model = LeNet5()
    model.load_state_dict(torch.load(state_dict_path, map_location=device, weights_only=True))
    return model.to(device).eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict", help="path to a LeNet-5 state_dict (.pt)")
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args(argv)
    root = ensure_mnist(args.data_root)
    digits, labels = load_digits(root, train=False)
    logits = predict(load_model(args.state_dict), to_model_input(digits))
    result = report(logits.argmax(dim=1), labels)
    print(json.dumps({k: result[k] for k in ("test_accuracy", "errors", "per_class_accuracy")}))
    return result


if __name__ == "__main__":
    main()
