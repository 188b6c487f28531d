"""The KServe half of a kserve-torchserve pod, for tests/test_kserve_pod.py: what the runtime
image's entrypoint starts once `torchserve --start` has returned, run with the real `kserve`
package the image pins (from .venv-kserve, not .venv).

As the image's wrapper does, it reads TorchServe's config.properties (CONFIG_PATH), serves each
model of its model_snapshot on KServe's model server with the server's default ports (HTTP
8080, gRPC 8081: gRPC is on), forwards predict and explain to TorchServe's inference address in
PROTOCOL_VERSION (v1 or v2, as KServe sets it), and marks a model ready once TorchServe's
management API lists a READY worker for it, trying MODEL_LOAD_MAX_TRY times MODEL_LOAD_DELAY
seconds apart. It exits non-zero when a port cannot be bound, as the image's does.
"""
import json
import logging
import os
import time
import urllib.request
from urllib.parse import urlsplit

from kserve import Model, ModelServer
from kserve.model import PredictorConfig

DEFAULT_CONFIG_PATH = "/mnt/models/config/config.properties"
DEFAULT_ADDRESS = "http://127.0.0.1:8085"   # the image wrapper's default inference and management address
MANAGEMENT_TIMEOUT_S = 5


def torchserve_settings(path: str) -> dict:
    """config.properties read the wrapper's way: every `key=value` line not starting with #."""
    with open(path) as config:
        pairs = [line.split("=", 1) for line in config if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


class TorchServeModel(Model):
    """One TorchServe model behind KServe's endpoints: KServe's own HTTP forwarding, aimed at
    TorchServe's inference address for predict and for explain."""

    def __init__(self, name: str, inference_address: str, management_address: str, protocol: str):
        super().__init__(name, PredictorConfig(urlsplit(inference_address).netloc, protocol))
        self.explainer_host = self.predictor_host
        self.management_address = management_address

    def load(self) -> bool:
        tries = int(os.environ.get("MODEL_LOAD_MAX_TRY", 10))
        delay_s = float(os.environ.get("MODEL_LOAD_DELAY", 30))
        for attempt in range(1, tries + 1):
            self.ready = self.has_ready_worker()
            if self.ready:
                break
            logging.info("model %s not ready (try %d of %d)", self.name, attempt, tries)
            time.sleep(delay_s)
        return self.ready

    def has_ready_worker(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.management_address}/models/{self.name}",
                                        timeout=MANAGEMENT_TIMEOUT_S) as response:
                versions = json.load(response)
        except (OSError, ValueError):   # TorchServe not up yet, or no such model yet
            return False
        return any(worker["status"] == "READY" for worker in versions[0]["workers"])


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = torchserve_settings(os.environ.get("CONFIG_PATH", DEFAULT_CONFIG_PATH))
    names = json.loads(settings.get("model_snapshot", "{}")).get("models", {}).keys()
    models = [TorchServeModel(name, settings.get("inference_address", DEFAULT_ADDRESS),
                              settings.get("management_address", DEFAULT_ADDRESS),
                              os.environ.get("PROTOCOL_VERSION", "v1"))
              for name in names]
    for model in models:
        model.load()
    ModelServer().start(models)


if __name__ == "__main__":
    main()
