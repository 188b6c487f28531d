"""TorchServe handler: any image of one handwritten digit -> softmax over 0-9.

TorchServe wants exactly one class in this file; request parsing lives in handler/payload.py.
BaseHandler loads LeNet-5 from the archive (model file + state_dict) onto the device
TorchServe assigned and drives preprocess -> inference -> postprocess. This subclass
overrides only those three steps, so that each request in a batch gets its own answer or
its own 4xx error: one bad image never changes what its batch peers receive.
"""
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from handler.payload import HTTP_STATUS, Batch, InternalError, image_bytes
from model.preprocess import ImageRejected, decode_image, normalize_digit, to_model_input

logger = logging.getLogger(__name__)


class DigitHandler(BaseHandler):

    def initialize(self, context):
        settings = context.model_yaml_config.get("handler", {})
        self.max_pixels = int(settings["max_pixels"])
        torch.set_num_threads(int(settings.get("torch_threads", 1)))
        super().initialize(context)
        # Training's record, packed in the archive: its softmax temperature calibrates confidence.
        training = Path(context.system_properties["model_dir"], "metrics.json")
        self.temperature = float(json.loads(training.read_text())["temperature"])

    def preprocess(self, data):
        started = time.perf_counter()
        batch = Batch(size=len(data))
        digits = []
        for idx, row in enumerate(data):
            try:
                digits.append(normalize_digit(decode_image(image_bytes(row), self.max_pixels)))
                batch.accepted.append(idx)
            except ImageRejected as error:
                batch.rejected[idx] = error
            except Exception as error:  # a bug of ours: answer this request 500, spare its peers
                logger.exception("preprocessing request %d failed", idx)
                batch.rejected[idx] = InternalError(f"the server failed on this image ({error.__class__.__name__})")
        if digits:
            batch.inputs = to_model_input(torch.from_numpy(np.stack(digits))).to(self.device)
        self._count("DigitPreprocessMs", (time.perf_counter() - started) * 1000)
        return batch

    def inference(self, batch):
        if batch.inputs is not None:
            with torch.inference_mode():
                batch.probabilities = torch.softmax(self.model(batch.inputs) / self.temperature, dim=1).cpu()
        return batch

    def postprocess(self, batch):
        responses = [None] * batch.size
        if batch.probabilities is not None:
            confidence, digit = batch.probabilities.max(dim=1)
            for idx, p, c, d in zip(batch.accepted, batch.probabilities.tolist(),
                                    confidence.tolist(), digit.tolist()):
                responses[idx] = self._reply(idx, 200, {
                    "digit": d, "confidence": round(c, 6), "probabilities": [round(v, 6) for v in p]})
            for d, n in Counter(digit.tolist()).items():
                self._count("DigitPredictions", n, str(d))
        for idx, error in batch.rejected.items():
            status = HTTP_STATUS[error.reason]
            responses[idx] = self._reply(idx, status, {"code": status, "type": error.reason, "message": str(error)})
        for reason, n in Counter(e.reason for e in batch.rejected.values()).items():
            self._count("DigitRejections", n, reason)
        return responses

    def _reply(self, idx: int, status: int, body: dict) -> str:
        if status != 200:
            self.context.set_response_status(status, body["type"], idx)
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(body, separators=(",", ":"))

    def _count(self, name: str, value: float, *dimensions: str) -> None:
        metric = self.context.metrics.get_metric(name, MetricTypes.COUNTER)
        metric.add_or_update(value, dimension_values=[self.context.model_name, *dimensions])
