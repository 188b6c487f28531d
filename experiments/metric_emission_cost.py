"""What one observation of the latency histogram costs the worker: TorchServe's own metric
object (ts.metrics.caching_metric) writing its line to stdout, as in a worker.

    PYTHONPATH=. .venv/bin/python experiments/metric_emission_cost.py > /dev/null

Prints (on stderr) the microseconds per observation, best of 5 rounds of 20,000.
"""
import logging
import sys
import time

from ts.metrics.caching_metric import CachingMetric
from ts.metrics.metric_type_enum import MetricTypes

from handler.digit_handler import METRICS


def main() -> None:
    logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)   # model_service_worker's
    unit, dimensions, kind = METRICS["DigitLatencyDeciseconds"]
    metric = CachingMetric("DigitLatencyDeciseconds", unit, ["ModelName", *dimensions], kind)
    assert kind is MetricTypes.HISTOGRAM
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20_000):
            metric.add_or_update(0.0123, dimension_values=["mnist"])
        rounds.append((time.perf_counter() - started) / 20_000 * 1e6)
    print(f"{min(rounds):.1f} us per observation (rounds: {', '.join(f'{r:.1f}' for r in rounds)})", file=sys.stderr)


if __name__ == "__main__":
    main()
