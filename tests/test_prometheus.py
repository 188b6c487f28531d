"""deploy/prometheus/, checked by promtool and run by a real Prometheus on a real TorchServe.

- promtool: the scrape config and the rule files are valid, and the unit tests of tests.yml
  pass, with a firing and a quiet case for every alert of alerts.yml.
- A real Prometheus (Debian's package; scrapes and rules every second) scrapes the session's
  TorchServe: N predictions and M rejections are read back exactly through its HTTP query API,
  the latency histogram's buckets move by N, every rule evaluates without error and the
  recording rules give values on the real series.
- `make monitor` (scripts/monitor.py) starts Prometheus beside a server; the query it prints
  shows the traffic.
- The worker hands a batch's metric lines to the frontend in one write (handler/metric_lines.py),
  the lines outside a batch at once.
"""
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from PIL import Image

from handler.metric_lines import MetricLines
from harness.prometheus import DEPLOY, scrape_config, start_prometheus
from harness.server import REPO, free_ports
from training import user_styles as styles

SETTLE_TIMEOUT_S = 20


def promtool(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: `make setup` installs it (Debian package prometheus)")
    return subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)


def test_scrape_config_is_valid():
    check = promtool("check", "config", "prometheus.yml")
    assert check.returncode == 0, check.stdout + check.stderr


def test_rules_are_valid():
    check = promtool("check", "rules", "rules.yml", "alerts.yml")
    assert check.returncode == 0, check.stdout + check.stderr


def test_rule_unit_tests_pass():
    check = promtool("test", "rules", "tests.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    alerts = {rule["alert"] for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}
    cases = [(case["alertname"], bool(case["exp_alerts"]))
             for test in yaml.safe_load((DEPLOY / "tests.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    assert {name for name, fires in cases if fires} == alerts
    assert {name for name, fires in cases if not fires} == alerts


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    """Prometheus scraping the session's server every second, with our rules."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is missing: `make setup` installs it (Debian package prometheus)")
    config = scrape_config(urlsplit(server.metrics).netloc, interval="1s")
    running = start_prometheus(config, tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{free_ports(1)[0]}")
    yield running
    running.stop()


def settled(prometheus, queries: dict, expected: dict | None = None) -> dict:
    """The value of each query in Prometheus once everything sent so far was scraped: scraped
    after now, and (with `expected`) until the values equal it, confirmed by one more scrape;
    the values last seen when they never do."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    since = time.time()
    while True:
        prometheus.scraped_after(since)
        values = {name: prometheus.value(query) for name, query in queries.items()}
        if expected is None or time.monotonic() > deadline:
            return values
        if values == expected:
            prometheus.scraped_after(time.time())
            return {name: prometheus.value(query) for name, query in queries.items()}
        since = time.time()


def post_all(server, bodies, content_type="image/png"):
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda body: server.predict(body, content_type), bodies))


REASONS = ["not_an_image", "no_digit_found"]
COUNTS = {"requests": 'sum(ts_inference_requests_total{model_name="mnist"})',
          "predictions": 'sum(DigitPredictions{ModelName="mnist"})',
          **{f"digit {d}": f'sum(DigitPredictions{{ModelName="mnist",Digit="{d}"}})' for d in range(10)},
          **{reason: f'sum(DigitRejections{{ModelName="mnist",Reason="{reason}"}})' for reason in REASONS},
          "latency observations": 'sum(DigitLatencyDeciseconds_count{ModelName="mnist"})'}


def test_predictions_and_rejections_are_read_back_exactly(server, prometheus, test_set, in_process):
    n, m = 37, {"not_an_image": 3, "no_digit_found": 2}
    images = test_set[0][4000:4000 + n]
    digits = Counter(in_process(images).argmax(axis=1).tolist())
    before = settled(prometheus, COUNTS)
    assert {r.status_code for r in post_all(server, [styles.mnist_png(a) for a in images])} == {200}
    refused = post_all(server, [b"%PDF-1.4 not a picture"] * m["not_an_image"], "application/octet-stream")
    refused += post_all(server, [styles.encode(Image.new("L", (64, 48), 230))] * m["no_digit_found"])
    assert [r.status_code for r in refused] == [400] * 3 + [422] * 2
    moved = {"requests": n + sum(m.values()), "predictions": n,
             **{f"digit {d}": digits[d] for d in range(10)}, **m,
             "latency observations": n + sum(m.values())}
    after = settled(prometheus, COUNTS, {name: before[name] + moved[name] for name in COUNTS})
    assert {name: after[name] - before[name] for name in COUNTS} == moved


BUCKETS = 'sum by (le) (DigitLatencyDeciseconds_bucket{ModelName="mnist"})'


def buckets(prometheus) -> dict[float, float]:
    return {float(row["metric"]["le"]): float(row["value"][1]) for row in prometheus.query(BUCKETS)}


def test_latency_histogram_buckets_move_by_n(server, prometheus, test_set):
    n = 25
    settled(prometheus, {})
    before = buckets(prometheus)
    assert {r.status_code for r in post_all(server, [styles.mnist_png(a) for a in test_set[0][5000:5000 + n]])} == {200}
    settled(prometheus, {"+Inf": 'sum(DigitLatencyDeciseconds_bucket{ModelName="mnist",le="+Inf"})'},
            {"+Inf": before[math.inf] + n})
    moved = {le: count - before[le] for le, count in sorted(buckets(prometheus).items())}
    assert moved[math.inf] == n
    assert list(moved) == [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf]
    counts = list(moved.values())
    assert all(0 <= a <= b for a, b in zip(counts, counts[1:])), moved   # cumulative, as histogram_quantile needs
    p99 = prometheus.value('histogram_quantile(0.99, sum by (le) (rate(DigitLatencyDeciseconds_bucket[1m])))')
    assert 0 < p99 <= 10, p99   # tenths of a second


def test_every_rule_loads_and_evaluates_without_error(prometheus):
    groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    declared = [rule.get("record") or rule["alert"] for name in ("rules.yml", "alerts.yml")
                for group in yaml.safe_load((DEPLOY / name).read_text())["groups"] for rule in group["rules"]]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert sorted(loaded) == sorted(declared)
    time.sleep(2)   # a few evaluations, every second
    loaded = {rule["name"]: rule for group in requests.get(f"{prometheus.url}/api/v1/rules", timeout=10)
              .json()["data"]["groups"] for rule in group["rules"]}
    assert {name: (rule["health"], rule.get("lastError", "")) for name, rule in loaded.items()} == \
        {name: ("ok", "") for name in declared}


def recorded(prometheus, name: str) -> dict[str, float]:
    """A recording rule's current series: their one distinguishing label value (or '') -> value."""
    rows = prometheus.query(name)
    return {next((v for k, v in row["metric"].items() if k != "__name__"), ""): float(row["value"][1]) for row in rows}


def test_recording_rules_give_values_on_the_real_series(server, prometheus, test_set):
    """After the traffic of the tests above (and this one's), every recording rule has a value:
    a rule whose labels or names did not match TorchServe's would give none."""
    post_all(server, [styles.mnist_png(a) for a in test_set[0][6000:6030]])
    server.predict(b"%PDF-1.4 not a picture", "application/octet-stream")
    settled(prometheus, {})
    time.sleep(1.5)   # one more rule evaluation
    assert recorded(prometheus, "mnist:requests:rate5m")[""] > 0
    assert recorded(prometheus, "mnist:predictions:rate5m")[""] > 0
    ratios = recorded(prometheus, "mnist:rejection_ratio:rate5m")
    assert ratios["not_an_image"] > 0 and all(0 <= v < 1 for v in ratios.values())
    assert recorded(prometheus, "mnist:error_ratio:rate5m")[""] == pytest.approx(sum(ratios.values()))
    assert 0 < recorded(prometheus, "mnist:preprocess_seconds_per_image:rate5m")[""] < 1
    shares = recorded(prometheus, "mnist:digit_share:rate1h")
    assert set(shares) <= {str(d) for d in range(10)} and sum(shares.values()) == pytest.approx(1)
    p50 = recorded(prometheus, "mnist:handler_latency_seconds:p50_5m")[""]
    p99 = recorded(prometheus, "mnist:handler_latency_seconds:p99_5m")[""]
    assert 0 < p50 <= p99 <= 1


def test_requests2xx_counts_prometheus_own_scrapes_and_ts_inference_requests_total_does_not(prometheus):
    queries = {"Requests2XX": "sum(Requests2XX)", "requests": 'sum(ts_inference_requests_total{model_name="mnist"})'}
    before = settled(prometheus, queries)
    time.sleep(3)   # three scrapes, no inference
    after = settled(prometheus, queries)
    assert after["requests"] == before["requests"]
    assert after["Requests2XX"] - before["Requests2XX"] >= 3


def test_make_monitor_starts_prometheus_beside_the_server_and_prints_a_live_query(server, tmp_path, test_set):
    env = {**os.environ, "TMPDIR": str(tmp_path), "TS_METRICS_ADDRESS": server.metrics,
           "PROMETHEUS_ADDRESS": f"127.0.0.1:{free_ports(1)[0]}", "PYTHONPATH": str(REPO)}
    monitor = [sys.executable, "-m", "scripts.monitor"]
    started = subprocess.run(monitor, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"Prometheus http://{env['PROMETHEUS_ADDRESS']} scrapes TorchServe at " \
               f"{urlsplit(server.metrics).netloc}" in started.stdout
        curl = re.search(r"from a shell: (curl .*)$", started.stdout, re.M).group(1)
        deadline = time.monotonic() + 60
        while True:
            post_all(server, [styles.mnist_png(a) for a in test_set[0][7000:7010]])
            result = json.loads(subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30).stdout)
            if result["data"]["result"] and float(result["data"]["result"][0]["value"][1]) > 0:
                break
            assert time.monotonic() < deadline, f"the printed query never showed the traffic: {result}"
            time.sleep(1)
    finally:
        stopped = subprocess.run([*monitor, "stop"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert "stopped Prometheus" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{env['PROMETHEUS_ADDRESS']}/-/ready", timeout=5)


def test_make_monitor_without_a_server_says_to_start_one(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "TS_METRICS_ADDRESS": f"http://127.0.0.1:{free_ports(1)[0]}",
           "PYTHONPATH": str(REPO)}
    started = subprocess.run([sys.executable, "-m", "scripts.monitor"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
    assert started.returncode == 1 and "run `make serve` first" in started.stderr


class Writes(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_a_batch_metric_lines_reach_the_frontend_in_one_write():
    stream = Writes()
    lines = MetricLines(stream, logging.Formatter("%(message)s"))
    logger = logging.Logger("metrics under test", logging.INFO)
    logger.addHandler(lines)
    with lines.batch():
        for value in range(3):
            logger.info("[METRICS]DigitLatencyDeciseconds.ds:%d", value)
        assert stream.writes == []
    logger.info("[METRICS]HandlerTime.ms:1")
    assert stream.writes == ["".join(f"[METRICS]DigitLatencyDeciseconds.ds:{v}\n" for v in range(3)),
                             "[METRICS]HandlerTime.ms:1\n"]
