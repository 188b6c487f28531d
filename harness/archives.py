"""Model archives for variants of the shipped one: our handler and weights under other model
settings (`make bench`, the batch sweep), and the do-nothing handler (harness/floor_handler.py)
that measures what TorchServe itself costs per request."""
import os
import subprocess
from pathlib import Path

import yaml

from configuration import MODEL_CONFIG, REPO


def pack(dest: Path, config: dict) -> Path:
    """Our handler and weights packed into dest/mnist.mar with `config` as its model-config.yaml
    (scripts/archive.sh, the script `make archive` runs)."""
    (dest / "model-config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([REPO / "scripts" / "archive.sh"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "MODEL_CONFIG": str(dest / "model-config.yaml"), "EXPORT_PATH": str(dest)})
    return dest / "mnist.mar"


def floor_archive(dest: Path) -> Path:
    """The do-nothing handler packed into dest/mnist.mar with the shipped model settings."""
    subprocess.run(["torch-model-archiver", "--force", "--model-name", "mnist", "--version", "1.0",
                    "--handler", REPO / "harness" / "floor_handler.py",
                    "--config-file", MODEL_CONFIG, "--export-path", dest], check=True)
    return dest / "mnist.mar"
