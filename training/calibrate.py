"""Temperature scaling (Guo et al., 2017): make the served confidence mean what it says.

Label smoothing caps a model's confidence (a clear digit gets about 0.92); one scalar T,
fitted so that softmax(logits / T) minimizes the negative log-likelihood, fixes that without
changing any prediction. T is fitted on training digits only, never on the test set or the
evaluation sets: half of the weight on the clean digits, half on the last CALIBRATION_DIGITS
training digits drawn in every user style (`training.user_styles`), because the confidence
must hold on what users send, where the model is less sure than on MNIST.

    python -m training.calibrate artifacts/lenet5_mnist.pt           # fits T, prints it beside metrics.json's
    python -m training.calibrate artifacts/lenet5_mnist.pt --write   # and writes it into metrics.json

Writing changes metrics.json, which is packed into the archive: `make archive` rebuilds it.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from configuration import handler_settings
from model.inference import load_model
from model.errors import RequestError
from model.preprocess import prepare, to_model_input
from training.data import ensure_mnist, load_digits, load_raw
from training.evaluate import calibration_error, predict
from training.user_styles import USER_STYLES

CALIBRATION_DIGITS = 150    # per user style: 1,950 images, a few seconds to draw
MAX_PIXELS = handler_settings()["max_pixels"]   # what the handler serves with


def user_style_inputs(root, count: int = CALIBRATION_DIGITS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs and labels of the last `count` training digits drawn in every user style,
    through the serving preprocessing (refused images left out)."""
    images, labels = load_raw(root, train=True)
    images, labels = images[-count:].numpy(), labels[-count:].tolist()
    digits, kept = [], []
    for i, draw in enumerate(USER_STYLES.values()):
        rng = np.random.default_rng([seed, i])
        for image, label in zip(images, labels):
            try:
                digits.append(prepare(draw(image, rng), MAX_PIXELS))
                kept.append(label)
            except RequestError:
                pass
    return to_model_input(torch.from_numpy(np.stack(digits))), torch.tensor(kept)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *more) -> float:
    """The T in [0.03, 3] (log-spaced grid) minimizing the NLL of softmax(logits / T), averaged
    with equal weight over each (logits, labels) set given."""
    sets = [(logits, labels), *zip(more[::2], more[1::2])]
    grid = torch.logspace(-1.5, 0.5, 401)
    nll = torch.stack([sum(F.cross_entropy(x / t, y) for x, y in sets) for t in grid])
    return round(grid[nll.argmin()].item(), 4)


def calibration_report(train_logits, train_labels, style_logits, style_labels, test_logits, test_labels) -> dict:
    temperature = fit_temperature(train_logits, train_labels, style_logits, style_labels)
    return {
        "temperature": temperature,
        "test_calibration_error_before": calibration_error(test_logits.softmax(dim=1), test_labels),
        "test_calibration_error_after": calibration_error((test_logits / temperature).softmax(dim=1), test_labels),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--write", action="store_true", help="store the fitted temperature in metrics.json "
                        "beside the state dict (the archive is then rebuilt by `make archive`)")
    args = parser.parse_args(argv)
    root = ensure_mnist(args.data_root)
    model = load_model(args.state_dict)
    splits = []
    for train in (True, False):
        digits, labels = load_digits(root, train)
        splits += [predict(model, to_model_input(digits)), labels]
    style_inputs, style_labels = user_style_inputs(root)
    report = calibration_report(*splits[:2], predict(model, style_inputs), style_labels, *splits[2:])
    metrics_file = Path(args.state_dict).with_name("metrics.json")
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if args.write:
        metrics_file.write_text(json.dumps({**metrics, **report}, indent=2))
    print(json.dumps(report))
    print(f"{metrics_file}: temperature {metrics.get('temperature', 'not set')}"
          + (f", now {report['temperature']}" if args.write else " (unchanged; --write stores the fit)"))
    return report


if __name__ == "__main__":
    main()
