"""A batch's metric lines written to the frontend in one write instead of one each.

A TorchServe worker reports every metric observation as a "[METRICS]..." line on its stdout,
which the frontend reads and exports; Python's logging writes and flushes each line on its own,
one system call and one wake-up of the frontend's reader per line. A batch of 8 emits 12 or
more: the 8 observations of the latency histogram, our counters and TorchServe's
PredictionTime. At 16 clients those writes took a fifth of the workers' time
(docs/performance.md, "Metric lines"). Inside `batch()` the lines are collected and written
together at its end; outside it (TorchServe's HandlerTime, logged after the handler returns)
they are written at once, as before.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

METRICS_LOGGER = "ts.metrics.caching_metric"   # where TorchServe's metric objects log their lines


class MetricLines(logging.Handler):
    """Writes the metric logger's lines to the stream TorchServe's worker logs to."""

    def __init__(self, stream, formatter: logging.Formatter | None):
        super().__init__()
        self.stream = stream
        self.setFormatter(formatter)
        self.pending: list[str] | None = None   # None: not inside a batch

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record) + "\n"
        if self.pending is None:
            self._write(line)
        else:
            self.pending.append(line)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self.pending = []
        try:
            yield
        finally:
            pending, self.pending = self.pending, None
            if pending:
                self._write("".join(pending))


def batched_metric_lines() -> Callable[[], contextlib.AbstractContextManager]:
    """What to wrap each batch in: where a TorchServe worker logs to stdout (its
    logging.basicConfig), the metric logger's lines are taken over and batched; elsewhere (the
    in-process harness) logging is left as it is and batches are not wrapped."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            lines = MetricLines(handler.stream, handler.formatter)
            metrics = logging.getLogger(METRICS_LOGGER)
            metrics.addHandler(lines)
            metrics.propagate = False
            return lines.batch
    return contextlib.nullcontext
