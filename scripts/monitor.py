"""`make monitor`: Prometheus beside the TorchServe `make serve` started, with the scrape config
and rules of deploy/prometheus/; prints its URL and a query that shows live traffic.

    python -m scripts.monitor          # start (again: the previous one is stopped first)
    python -m scripts.monitor stop     # what `make stop` runs too

The server's metrics address is config/config.properties' metrics_address (TS_METRICS_ADDRESS
overrides it, as it does for TorchServe); Prometheus listens on PROMETHEUS_ADDRESS
(127.0.0.1:9090) and keeps its data and log in $TMPDIR/mnist-prometheus/, its pid beside them.
"""
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import requests

from harness.prometheus import scrape_config, start_prometheus
from configuration import server_properties

LIVE_QUERY = 'sum(rate(ts_inference_requests_total{model_name="mnist"}[1m]))'
WORKDIR = Path(tempfile.gettempdir()) / "mnist-prometheus"
PID_FILE = WORKDIR / "prometheus.pid"
TARGET_UP_TIMEOUT_S = 30


def metrics_target() -> str:
    """host:port of the server's metrics API, as TorchServe reads it from config.properties."""
    address = server_properties(environ=os.environ)["metrics_address"]
    parts = urlsplit(address)
    return f"{'127.0.0.1' if parts.hostname == '0.0.0.0' else parts.hostname}:{parts.port}"


def stop() -> int | None:
    """Stop the Prometheus whose pid is in PID_FILE, if it is still that Prometheus; its pid."""
    try:
        process = psutil.Process(int(PID_FILE.read_text()))
        if f"--config.file={WORKDIR / 'prometheus.yml'}" not in process.cmdline():
            return None   # the pid was reused
        process.terminate()
        process.wait(timeout=30)
        return process.pid
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return None
    finally:
        PID_FILE.unlink(missing_ok=True)


def start() -> int:
    target = metrics_target()
    try:
        requests.get(f"http://{target}/metrics", timeout=5).raise_for_status()
    except requests.RequestException as error:
        print(f"[monitor] no TorchServe metrics at http://{target}/metrics ({error.__class__.__name__}): "
              "run `make serve` first", file=sys.stderr)
        return 1
    stop()
    address = os.environ.get("PROMETHEUS_ADDRESS", "127.0.0.1:9090")
    prometheus = start_prometheus(scrape_config(target), WORKDIR, address)
    PID_FILE.write_text(str(prometheus.process.pid))
    deadline = time.monotonic() + TARGET_UP_TIMEOUT_S
    while prometheus.value('up{job="torchserve"}') != 1:
        if time.monotonic() > deadline:
            print(f"[monitor] Prometheus at {prometheus.url} cannot scrape {target}; see {WORKDIR}/prometheus.log",
                  file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"[monitor] Prometheus {prometheus.url} scrapes TorchServe at {target} (data and log in {WORKDIR})\n"
          f"[monitor] live requests/s: {prometheus.url}/graph?g0.expr={quote(LIVE_QUERY)}&g0.tab=0\n"
          f"[monitor] from a shell: curl -s {prometheus.url}/api/v1/query --data-urlencode "
          f"'query={LIVE_QUERY}'\n"
          f"[monitor] alerts: {prometheus.url}/alerts; stop it with `make stop`")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stopped = stop()
        print(f"[monitor] stopped Prometheus (pid {stopped})" if stopped else
              "[monitor] no Prometheus started by `make monitor` is running")
        sys.exit(0)
    sys.exit(start())
