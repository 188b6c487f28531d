"""TorchServe handler: any image of one handwritten digit -> softmax over 0-9.

TorchServe wants exactly one class in this file; request parsing lives in handler/payload.py,
digits sent as tensors in handler/tensors.py, explanations in handler/explain.py, a batch's metric
lines in handler/metric_lines.py.
BaseHandler loads LeNet-5 from the archive (model file + state_dict) onto the device
TorchServe assigned and drives preprocess -> inference -> postprocess. This subclass
overrides only those three steps, so that each request in a batch gets its own answer or
its own 4xx error: one bad image never changes what its batch peers receive. Whether a
request asks why (/explanations, KServe's :explain and /explain) is decided per request too.
"""
import ctypes
import ctypes.util
import json
import logging
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

from handler.explain import DIGIT_MEANS, Explainer
from handler.metric_lines import batched_metric_lines
from handler.payload import Batch, parse
from model.errors import ForHeavyLane, InternalError, RequestError, TooManyExplanations, TooManyPixels
from model.inference import TRAINING_RECORD, answer, probabilities
from model.preprocess import INPUT_SIZE, load_image, open_image, prepare, to_model_input

logger = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter

# Our metrics: name -> (unit, dimensions after ModelName, type). Declared here rather than in a
# metrics.yaml, whose path TorchServe would resolve against the folder it is started from;
# config.properties turns on model_metrics_auto_detect, so the frontend exports each one the
# first time it is emitted. TorchServe 0.12 gives a HISTOGRAM the Prometheus client's fixed
# buckets, 0.005 to 10; in tenths of a second they span 0.5 ms to 1 s (README, "Metrics").
METRICS = {
    "DigitPredictions": ("Count", ["Digit"], MetricTypes.COUNTER),          # answers per predicted digit
    "DigitRejections": ("Count", ["Reason"], MetricTypes.COUNTER),          # error answers per reason
    "DigitPreprocessMs": ("ms", [], MetricTypes.COUNTER),                   # total decode + normalize time
    "DigitLatencyDeciseconds": ("ds", [], MetricTypes.HISTOGRAM),           # per request, time in this handler
}


def return_large_buffers_to_the_os(threshold: int) -> None:
    """Decoded images near max_pixels take tens of MB each. glibc raises its mmap threshold
    after freeing such a buffer, so later ones are carved from the heap and fragment it: under
    hostile traffic worker RSS grew 33 MB/min (`make soak`). A fixed threshold sends every
    buffer over it to mmap and back to the OS when freed."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallopt") or not libc.mallopt(M_MMAP_THRESHOLD, threshold):
        logger.warning("could not set the malloc mmap threshold (not glibc?): memory may fragment")


class DigitHandler(BaseHandler):

    def initialize(self, context):
        for name, (unit, dimensions, kind) in METRICS.items():
            context.metrics.add_metric_to_cache(name, unit, ["ModelName", *dimensions], kind)
        settings = context.model_yaml_config.get("handler", {})
        self.max_pixels = int(settings["max_pixels"])
        self.explain_max_per_batch = int(settings["explain_max_per_batch"])
        self.max_pixels_per_batch = int(settings["max_pixels_per_batch"])
        self.pixel_share = self.max_pixels_per_batch // int(context.model_yaml_config.get("batchSize", 1))
        self.fast_lane_max_pixels = int(settings["fast_lane_max_pixels"])
        return_large_buffers_to_the_os(int(settings["malloc_mmap_threshold"]))
        if "torch_threads" in settings:
            torch.set_num_threads(int(settings["torch_threads"]))
        super().initialize(context)
        # Training's record, packed in the archive: its softmax temperature calibrates confidence.
        training = Path(context.system_properties["model_dir"], TRAINING_RECORD)
        self.temperature = float(json.loads(training.read_text())["temperature"])
        digit_means = torch.from_numpy(np.load(Path(context.system_properties["model_dir"], DIGIT_MEANS)))
        self.explainer = Explainer(self.model, steps=int(settings["explain_steps"]), digit_means=digit_means)
        self.predictor = self._predictor(optimize=bool(settings.get("optimize", False)))
        self.metric_lines = batched_metric_lines()
        # deviceType gpu falls back to the CPU silently: say in model_log.log where answers come from.
        logger.info("LeNet-5 answers on %s%s", self.device, "" if self.predictor is self.model else " (optimized)")

    def _predictor(self, optimize: bool) -> torch.nn.Module:
        """The model that answers predictions. On the CPU, optimized: traced, frozen (BatchNorm
        folded into its convolution) and moved to oneDNN kernels, twice as fast at batch 8-16
        (docs/performance.md). Explanations need gradients and keep the eager self.model.
        TorchScript is deprecated in favour of torch.compile, which needs a C++ compiler where
        the worker runs (the image has none) and compiles for seconds at every start."""
        if not optimize or self.device.type != "cpu":
            return self.model
        example = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # the deprecation, chosen knowingly
            # check_trace off: the check compares outputs with torch.testing, whose imports
            # (sympy, mpmath, ...) cost 1.4 s of every worker's start; a graph without control
            # flow traces exactly, and the tests compare the optimized answers with the eager model's.
            return torch.jit.optimize_for_inference(torch.jit.trace(self.model, example, check_trace=False))

    def handle(self, data, context):
        """BaseHandler's preprocess -> inference -> postprocess, timed: every request of the batch
        spent that long in the handler, so each one is an observation of the latency histogram.
        The batch's metric lines reach the frontend in one write (handler/metric_lines.py)."""
        with self.metric_lines():
            started = time.perf_counter()
            responses = super().handle(data, context)
            deciseconds = (time.perf_counter() - started) * 10
            latency = self.context.metrics.get_metric("DigitLatencyDeciseconds", MetricTypes.HISTOGRAM)
            for _ in data:
                latency.add_or_update(deciseconds, dimension_values=[self.context.model_name])
        return responses

    def preprocess(self, data):
        if not data:  # what TorchServe's KServe envelopes pass on for a body without instances or inputs
            raise PredictionException('send KServe v1 {"instances": [...]} or v2 {"inputs": [...]}', 400)
        started = time.perf_counter()
        batch = Batch(size=len(data), requests=len(self.context.request_ids))
        digits, sent = {}, {}   # row of the batch's inputs -> a 28x28 uint8 digit / a model input as sent
        for idx, row in enumerate(data):
            try:
                headers = self.context.get_all_request_header(batch.request(idx))
                content_types = {name: value.get("content-type") for name, value in headers.items()
                                 if isinstance(value, dict)}   # TorchServe's per-field headers
                request = parse(row, headers.get("explain") == "True", content_types)
                fast_lane = any(name.lower() == ForHeavyLane.marker.lower() for name in headers)
                digit = (None if request.image is None
                         else torch.from_numpy(self._prepare(request.image, batch, fast_lane)))
                if headers.get("explain") == "True":
                    if len(batch.explain) == self.explain_max_per_batch:
                        raise TooManyExplanations(f"this batch already holds {self.explain_max_per_batch} "
                                                  "explanations, the server's limit: retry in a moment")
                    batch.explain[idx] = request
                    if digit is not None:   # the map is drawn over the digit the model saw
                        batch.explanations[idx] = {"normalized_digit": digit.tolist()}
                if digit is None:
                    sent[len(batch.accepted)] = request.model_input
                else:
                    digits[len(batch.accepted)] = digit
                batch.accepted.append(idx)
            except RequestError as error:
                # A copy without the traceback, which holds this frame and so the batch: a cycle
                # only the garbage collector's rare full passes free, ~100 bytes a rejected
                # request, +2 MB/min per worker under hostile traffic (README, "Reliability").
                batch.rejected[idx] = type(error)(str(error))
            except Exception as error:  # a bug of ours: answer this request 500, spare its peers
                logger.exception("preprocessing request %d failed", idx)
                batch.rejected[idx] = InternalError(f"the server failed on this image ({error.__class__.__name__})")
        if batch.accepted:
            batch.inputs = self._stack(digits, sent).to(self.device)
        self._count("DigitPreprocessMs", (time.perf_counter() - started) * 1000)
        return batch

    def _prepare(self, image, batch: Batch, fast_lane: bool):
        """The digit of an image, decoded only within its batch's pixel budget: whatever a batch
        holds, it decodes at most max_pixels_per_batch pixels beyond each request's share of it
        (an image within its share, or the batch's first, is always decoded), so no batch of
        legal images outlasts responseTimeout (docs/reliability.md). In nginx's fast lane an
        image over fast_lane_max_pixels is not decoded at all: nginx re-sends it to the heavy lane."""
        if isinstance(image, bytes):
            image = open_image(image, self.max_pixels)
            pixels = image.width * image.height
            if fast_lane and pixels > self.fast_lane_max_pixels:
                raise ForHeavyLane(f"{pixels} pixels: over the fast lane's {self.fast_lane_max_pixels}, "
                                   "for the heavy lane")
            if batch.pixels and pixels > self.pixel_share and batch.pixels + pixels > self.max_pixels_per_batch:
                raise TooManyPixels(f"this batch already decodes {batch.pixels} pixels, the server's limit is "
                                    f"{self.max_pixels_per_batch}: retry in a moment")
            batch.pixels += pixels
            image = load_image(image)
        return prepare(image)

    @staticmethod
    def _stack(digits: dict, sent: dict) -> torch.Tensor:
        """(N, 1, 32, 32) in row order: the digits standardized in one to_model_input call, the
        model inputs as sent."""
        inputs = torch.empty(len(digits) + len(sent), 1, INPUT_SIZE, INPUT_SIZE)
        if digits:
            inputs[list(digits)] = to_model_input(torch.stack(list(digits.values())))
        if sent:
            inputs[list(sent)] = torch.stack(list(sent.values()))
        return inputs

    def inference(self, batch):
        if batch.inputs is not None:
            with torch.inference_mode():
                batch.probabilities = probabilities(self.predictor, batch.inputs, self.temperature).cpu()
        if batch.explain:
            rows = [batch.accepted.index(idx) for idx in batch.explain]
            targets = [int(batch.probabilities[row].argmax()) if request.target is None else request.target
                       for row, request in zip(rows, batch.explain.values())]
            # a digit contrasted with itself scores zero: the predicted digit is then explained alone
            versus = [None if request.versus == target else request.versus
                      for target, request in zip(targets, batch.explain.values())]
            attributions, deltas = self.explainer(batch.inputs[rows], targets, versus)
            for idx, target, other, attribution, delta in zip(batch.explain, targets, versus, attributions.tolist(),
                                                              deltas.tolist()):
                batch.explanations[idx] = {"target": target, **({} if other is None else {"versus": other}),
                                           "convergence_delta": round(delta, 6),
                                           "attributions": [[round(v, 6) for v in line] for line in attribution],
                                           **batch.explanations.get(idx, {})}
        return batch

    def explain_handle(self, data_preprocess, raw_data):
        """BaseHandler sends a whole batch here when its first request asks why; preprocess has
        already decided that per request, so explanations and predictions share one path."""
        return self.postprocess(self.inference(data_preprocess))

    def postprocess(self, batch):
        responses = [None] * batch.size
        if batch.probabilities is not None:
            answers = [answer(p) for p in batch.probabilities.tolist()]
            for idx, fields in zip(batch.accepted, answers):
                responses[idx] = self._reply(batch.request(idx), 200, {**fields, **batch.explanations.get(idx, {})})
            for d, n in Counter(fields["digit"] for fields in answers).items():
                self._count("DigitPredictions", n, str(d))
        for idx, error in batch.rejected.items():
            request = batch.request(idx)
            if isinstance(error, (TooManyExplanations, TooManyPixels)):
                self.context.set_response_header(request, "Retry-After", str(error.retry_after_s))
            responses[idx] = self._reply(request, error.status,
                                         {"code": error.status, "type": error.reason, "message": str(error)})
        for reason, n in Counter(e.reason for e in batch.rejected.values()).items():
            self._count("DigitRejections", n, reason)
        return responses

    def _reply(self, request: int, status: int, body: dict) -> str:
        if status != 200:
            self.context.set_response_status(status, body["type"], request)
        self.context.set_response_content_type(request, "application/json")
        return json.dumps(body, separators=(",", ":"))

    def _count(self, name: str, value: float, *dimensions: str) -> None:
        metric = self.context.metrics.get_metric(name, MetricTypes.COUNTER)
        metric.add_or_update(value, dimension_values=[self.context.model_name, *dimensions])
