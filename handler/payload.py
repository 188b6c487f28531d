"""What one request carries (raw body, multipart file or base64 JSON) and how a batch is tracked."""
import base64
import binascii
from dataclasses import dataclass, field

import torch

from model.preprocess import ImageRejected

HTTP_STATUS = {"invalid_request": 400, "not_an_image": 400, "image_too_large": 413, "no_digit_found": 422,
               "internal_error": 500}
PAYLOAD_FIELDS = ("data", "body", "file", "image")  # where TorchServe puts the body or a form upload


class InvalidRequest(ImageRejected):
    reason = "invalid_request"


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


def image_bytes(row: dict) -> bytes:
    """The image of one request: the raw body, a multipart file, or JSON {"data": "<base64>"}."""
    values = [row[name] for name in PAYLOAD_FIELDS if row.get(name) is not None] or list(row.values())
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
    encoded = value.split(",", 1)[1] if value.startswith("data:") else value  # data URLs too
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the \"data\" field is not valid base64") from None
