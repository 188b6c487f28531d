"""What one request carries (raw body, multipart file or base64 JSON) and how a batch is tracked."""
import base64
import binascii
from dataclasses import dataclass, field

import torch

from model.preprocess import ImageRejected

HTTP_STATUS = {"invalid_request": 400, "not_an_image": 400, "image_too_large": 413, "no_digit_found": 422,
               "too_many_explanations": 429, "internal_error": 500}
PAYLOAD_FIELDS = ("data", "body", "file", "image")  # where TorchServe puts the body or a form upload
TARGET = "target"  # the digit an explanation is asked for: a JSON or form field


class InvalidRequest(ImageRejected):
    reason = "invalid_request"


class TooManyExplanations(ImageRejected):
    """More explanations in one batch than `handler.explain_max_per_batch`: retry, so predictions keep flowing."""

    reason = "too_many_explanations"


class InternalError(ImageRejected):
    """Not the client's fault: an unexpected failure on one image, logged with its traceback."""

    reason = "internal_error"


@dataclass
class Batch:
    """One TorchServe batch: the accepted requests' model inputs and the rejected ones' errors."""

    size: int
    accepted: list = field(default_factory=list)       # request indices, in input order
    inputs: torch.Tensor | None = None                 # (len(accepted), 1, 32, 32)
    rejected: dict = field(default_factory=dict)       # request index -> ImageRejected
    probabilities: torch.Tensor | None = None          # (len(accepted), 10)
    explain: dict = field(default_factory=dict)        # row index asking why -> its target (None: the answer)
    explanations: dict = field(default_factory=dict)   # row index -> what its answer adds: target, attributions
    requests: int = 0                                  # TorchServe requests the rows came in

    def request(self, idx: int) -> int:
        """The TorchServe request that row idx belongs to. TorchServe's KServe envelopes pass on the
        instances or inputs of a batch's first request only: rows that do not match the requests
        one to one are all request 0's, which answers for them all with one status."""
        return idx if self.size == self.requests else 0


def image_bytes(row: dict) -> bytes:
    """The image of one request: the raw body, a multipart file, or JSON {"data": "<base64>"}."""
    if not isinstance(row, dict):
        raise InvalidRequest("each KServe instance must be {\"data\": \"<base64-encoded image>\"} "
                             "or a 28x28 or 32x32 list of numbers")
    values = ([row[name] for name in PAYLOAD_FIELDS if row.get(name) is not None]
              or [value for name, value in row.items() if name != TARGET])
    if len(values) != 1:
        raise InvalidRequest("send exactly one image: as the request body (Content-Type: image/png or "
                             "application/octet-stream), as one multipart file, or as JSON {\"data\": \"<base64>\"}")
    value = values[0]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):  # TorchServe already parsed a JSON body
        value = value.get("data")
    if not isinstance(value, str):
        raise InvalidRequest("a JSON body must look like {\"data\": \"<base64-encoded image>\"}")
    encoded = value.partition(",")[2] if value.startswith("data:") else value  # data URLs too
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the \"data\" field is not valid base64") from None


def explain_target(row) -> int | None:
    """The digit whose logit an explanation attributes, if the client named one: a "target" field
    of the JSON body, form or KServe v1 instance, or of a KServe v2 input's "parameters"."""
    places = [row, *(row.get(name) for name in (*PAYLOAD_FIELDS, "parameters"))] if isinstance(row, dict) else []
    found = [place[TARGET] for place in places if isinstance(place, dict) and place.get(TARGET) is not None]
    if not found:
        return None
    value = found[0].decode() if isinstance(found[0], (bytes, bytearray)) else found[0]
    if str(value).strip() not in {str(digit) for digit in range(10)}:
        raise InvalidRequest(f"\"target\" must be a digit from 0 to 9, not {value!r}")
    return int(value)
