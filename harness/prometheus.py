"""A real Prometheus (Debian's `prometheus` package) scraping a TorchServe's metrics, with the
rules of deploy/prometheus/: what `make monitor` runs and the tests query."""
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from harness.server import REPO

DEPLOY = REPO / "deploy" / "prometheus"
READY_TIMEOUT_S = 30


def scrape_config(metrics_target: str, interval: str | None = None) -> dict:
    """deploy/prometheus/prometheus.yml aimed at `metrics_target` (host:port), its rule files by
    absolute path so that the copy works from anywhere; `interval` replaces the scrape and rule
    evaluation intervals."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    if interval:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [metrics_target]}]
    return config


@dataclass
class Prometheus:
    """A Prometheus answering its HTTP API at `url`."""

    url: str
    process: subprocess.Popen

    def query(self, expr: str) -> list[dict]:
        """The result of an instant query: [{"metric": {labels}, "value": [time, "value"]}, ...]."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def value(self, expr: str) -> float:
        """The one value `expr` gives; 0 when it gives none (a series not yet seen)."""
        result = self.query(expr)
        if len(result) > 1:
            raise ValueError(f"{expr} gives {len(result)} series, not one")
        return float(result[0]["value"][1]) if result else 0.0

    def scraped_after(self, when: float, timeout_s: float = 30) -> None:
        """Wait until the TorchServe target was scraped after `when` (a time.time())."""
        deadline = time.monotonic() + timeout_s
        while self.value('max(timestamp(up{job="torchserve"}))') <= when:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scrape of the TorchServe target after {when}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_prometheus(config: dict, workdir: Path, address: str) -> Prometheus:
    """Prometheus with `config`, its data in `workdir`, listening on `address` (host:port), in
    its own session so that it outlives the caller (`make monitor`); ready when this returns."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    with open(workdir / "prometheus.log", "w") as log:
        process = subprocess.Popen(["prometheus", f"--config.file={workdir / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={address}"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prometheus = Prometheus(f"http://{address}", process)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError("Prometheus exited:\n" + (workdir / "prometheus.log").read_text()[-3000:])
        try:
            if requests.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                return prometheus
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            prometheus.stop()
            raise RuntimeError(f"Prometheus not ready within {READY_TIMEOUT_S} s")
        time.sleep(0.1)
