"""Train LeNet-5 on MNIST and write its state_dict, metrics and learning curves.

    python -m training.train                # defaults from config/training.yaml
    python -m training.train --epochs 5     # any key of that file as a flag

Outputs in `out_dir`: lenet5_mnist.pt (state_dict only), metrics.json (accuracy, the
softmax temperature the handler serves with, provenance), training.png.
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from configuration import training_config
from model.lenet5 import LeNet5
from model.preprocess import MEAN, STD, to_model_input
from training.augment import UNTURNABLE, augment, not_digits, pen_pool, strokes
from training.calibrate import calibration_report, user_style_inputs
from training.data import checksum, ensure_mnist, load_digits
from training.evaluate import predict, report

AUGMENT_KEYS = ("rotate_deg", "scale", "shear_deg", "translate_px", "elastic_alpha", "elastic_sigma")
STROKE_KEYS = ("thickness", "blur", "low_res")
PEN_DRAWINGS = 8192    # scribbles and letters drawn once for outlier exposure, reused (augmented) every epoch


def parse_config(argv=None) -> dict:
    """config/training.yaml, overridden by command-line flags of the same names."""
    defaults = training_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N digits only (quick checks); 0 = all 60,000")
    for key, value in defaults.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    return vars(parser.parse_args(argv))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def ema_with_warmup(decay: float):
    """EMA update whose decay ramps up as (1 + n) / (10 + n) to `decay`, so that short runs
    are not dominated by the random initial weights."""
    def update(averaged: list, current: list, num_averaged) -> None:
        step_decay = min(decay, (1 + int(num_averaged)) / (10 + int(num_averaged)))
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1 - step_decay)
            else:   # BatchNorm's step counter
                a.copy_(c)
    return update


def train(cfg: dict) -> dict:
    """Train LeNet-5 as `cfg` says, on the network's inputs as serving makes them (to_model_input)."""
    torch.manual_seed(cfg["seed"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = pick_device(cfg["device"])
    generator = torch.Generator(device=device).manual_seed(cfg["seed"])

    root = ensure_mnist(cfg["data_root"])
    train_digits, train_labels = load_digits(root, train=True)
    if cfg["train_subset"]:
        train_digits, train_labels = train_digits[:cfg["train_subset"]], train_labels[:cfg["train_subset"]]
    test_digits, test_labels = load_digits(root, train=False)
    x_train, y_train = to_model_input(train_digits).to(device), train_labels.to(device)
    x_test, y_test = to_model_input(test_digits).to(device), test_labels.to(device)

    model = LeNet5().to(device)
    # An exponential moving average of the weights (and BatchNorm statistics) is what we
    # evaluate and ship: it smooths out the last steps' noise.
    averaged = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(cfg["ema_decay"]),
                                                   use_buffers=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps_per_epoch = -(-len(x_train) // cfg["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg["lr"],
                                                   total_steps=cfg["epochs"] * steps_per_epoch)
    augment_args = {key: cfg[key] for key in AUGMENT_KEYS}
    stroke_args = {key: cfg[key] for key in STROKE_KEYS}
    outliers = round(cfg["not_digit_share"] * cfg["batch_size"])
    if outliers:
        pen = pen_pool(PEN_DRAWINGS, letters=cfg["not_digit_letters"], mean=MEAN, std=STD, generator=generator)
        turnable = (~torch.isin(y_train, torch.tensor(UNTURNABLE, device=device))).nonzero().squeeze(1)
    history = []
    started = time.perf_counter()
    for epoch in range(1, cfg["epochs"] + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator, device=device)
        loss_sum = correct = 0
        for step in range(steps_per_epoch):
            batch = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
            inputs = x_train[batch]
            if outliers:
                pairs = order[torch.randint(len(order), (2 * (outliers // 4),), generator=generator, device=device)]
                turn = turnable[torch.randint(len(turnable), (outliers // 4,), generator=generator, device=device)]
                inputs = torch.cat([inputs, not_digits(x_train[pairs], x_train[turn], pen, mean=MEAN, std=STD,
                                                       generator=generator)])
            inputs = augment(inputs, generator=generator, **augment_args)
            inputs = strokes(inputs, mean=MEAN, std=STD, generator=generator, **stroke_args)
            all_logits = model(inputs)
            logits = all_logits[:len(batch)]
            loss = F.cross_entropy(logits, y_train[batch], label_smoothing=cfg["label_smoothing"])
            if outliers:   # outlier exposure: no digit should get a confident answer
                loss = loss - cfg["not_digit_weight"] * all_logits[len(batch):].log_softmax(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            averaged.update_parameters(model)
            loss_sum += loss.item() * len(batch)
            correct += (logits.argmax(dim=1) == y_train[batch]).sum().item()
        test_accuracy = (predict(averaged.module, x_test).argmax(dim=1) == y_test).float().mean().item()
        history.append({"epoch": epoch, "loss": loss_sum / len(x_train), "train_accuracy": correct / len(x_train),
                        "test_accuracy": test_accuracy, "seconds": time.perf_counter() - epoch_start})
        print("epoch {epoch:3d}  loss {loss:.4f}  train acc {train_accuracy:.4%}  "
              "test acc {test_accuracy:.4%}  {seconds:.1f}s".format(**history[-1]), flush=True)

    wall = time.perf_counter() - started
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in averaged.module.state_dict().items()}, out / "lenet5_mnist.pt")
    test_logits = predict(averaged.module, x_test)
    style_inputs, style_labels = user_style_inputs(root)
    metrics = {
        **report(test_logits.argmax(dim=1), y_test),
        **calibration_report(predict(averaged.module, x_train), y_train,
                             predict(averaged.module, style_inputs.to(device)), style_labels.to(device),
                             test_logits, y_test),
        "epochs": cfg["epochs"],
        "wall_seconds": round(wall, 1),
        "device": str(device),
        "torch_version": torch.__version__,
        "data_sha256": checksum(root),
        "hyperparameters": cfg,
        "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot(history, metrics["confusion_matrix"], out / "training.png")
    print(f"test accuracy {metrics['test_accuracy']:.2%} ({metrics['errors']} errors) "
          f"in {wall:.0f}s; wrote {out}/lenet5_mnist.pt, metrics.json, training.png")
    return metrics


def plot(history: list, confusion: list, path: Path) -> None:
    """Learning curves and the test confusion matrix in one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax, cm_ax) = plt.subplots(1, 3, figsize=(16, 4.5))
    loss_ax.plot(epochs, [h["loss"] for h in history])
    loss_ax.set(title="training loss", xlabel="epoch")
    acc_ax.plot(epochs, [100 * h["train_accuracy"] for h in history], label="train (augmented)")
    acc_ax.plot(epochs, [100 * h["test_accuracy"] for h in history], label="test")
    acc_ax.set(title="accuracy (%)", xlabel="epoch", ylim=(97, 100))
    acc_ax.legend()
    off_diagonal = torch.tensor(confusion).fill_diagonal_(0)
    cm_ax.imshow(off_diagonal.numpy(), cmap="Reds")
    for i in range(10):
        for j in range(10):
            cm_ax.text(j, i, str(confusion[i][j]), ha="center", va="center", fontsize=7)
    cm_ax.set(title="test confusion (errors shaded)", xlabel="predicted", ylabel="true",
              xticks=range(10), yticks=range(10))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    train(parse_config())
