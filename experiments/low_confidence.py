"""What refusing every answer below a confidence would cost: the right answers below it, per
evaluation set (docs/robustness.md, "Refuse or answer low?").

    PYTHONPATH=. python experiments/low_confidence.py artifacts/lenet5_mnist.pt --count 300

The sets and the served path are training.evaluate's: user styles on the first `--count` test
digits, and the independent digit sets.
"""
import argparse

import torch

from model.inference import load_model, served_temperature
from training import eval_sets
from training.data import ensure_mnist
from training.evaluate import served, style_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict")
    parser.add_argument("--count", type=int, default=300, help="test digits per user style")
    parser.add_argument("--below", type=float, default=0.5, help="the confidence a refusal would start at")
    args = parser.parse_args()
    root = ensure_mnist("data")
    model, temperature = load_model(args.state_dict), served_temperature(args.state_dict)
    sets = {f"user_styles/{name}": (images, labels) for name, (images, labels) in style_sets(root, args.count).items()}
    for name, maker in {**eval_sets.SETS, **eval_sets.HELD_OUT}.items():
        images, labels = zip(*maker(root))
        sets[name] = (list(images), torch.tensor(labels))
    print(f"| set | right answers | of them below {args.below} |")
    print("|---|---|---|")
    for name, (images, labels) in sets.items():
        probabilities, _ = served(model, temperature, images)
        answered = ~probabilities.isnan().any(dim=1)
        confidence, predicted = probabilities[answered].max(dim=1)
        right = predicted == labels[answered]
        print(f"| {name} | {int(right.sum())} | {int((right & (confidence < args.below)).sum())} |")


if __name__ == "__main__":
    main()
