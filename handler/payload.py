"""What one request carries, parsed once, and how a batch is tracked.

A request arrives as a raw body, a multipart file, base64 JSON ({"data": ...}, a data: URL too),
or a KServe instance or input (an image, a 28x28 digit or a 32x32 model input as numbers). `parse`
turns each into one `Request`: the image to prepare, or the model input sent as such, and the
digit an explanation is asked for, and the one it is contrasted with.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

import torch
from PIL import Image

from handler.tensors import is_tensor, tensor_content
from model.errors import InvalidRequest, NotAnImage

PAYLOAD_FIELDS = ("data", "body", "file", "image")  # where TorchServe puts the body or a form upload
TARGET = "target"  # the digit an explanation is asked for: a JSON or form field
VERSUS = "versus"  # the digit it is contrasted with ("why the target and not this one?"): a field too


@dataclass(frozen=True)
class Request:
    """One request as the handler answers it: an image (an encoded file or decoded pixels, which
    `prepare` turns into the digit), or a (1, 32, 32) model input sent as `to_model_input` makes
    it; and, when it asks why, the digit to explain (None: the predicted one) and the digit to
    contrast it with (None: none)."""

    image: bytes | Image.Image | None
    model_input: torch.Tensor | None
    target: int | None
    versus: int | None


def parse(row, explain: bool, content_types: dict | None = None) -> Request:
    """The one parse of a request (a TorchServe input row, with the content type of each of its
    fields); InvalidRequest when it is malformed."""
    content = tensor_content(row) if is_tensor(row) else image_bytes(row, content_types or {})
    target, versus = (explain_digit(row, TARGET), explain_digit(row, VERSUS)) if explain else (None, None)
    if target is not None and target == versus:
        raise InvalidRequest(f"\"{VERSUS}\" must differ from \"{TARGET}\": a digit against itself explains nothing")
    if isinstance(content, torch.Tensor):
        return Request(None, content, target, versus)
    return Request(content, None, target, versus)


@dataclass
class Batch:
    """One TorchServe batch: the accepted requests' model inputs and the rejected ones' errors."""

    size: int
    accepted: list = field(default_factory=list)       # request indices, in input order
    inputs: torch.Tensor | None = None                 # (len(accepted), 1, 32, 32)
    rejected: dict = field(default_factory=dict)       # request index -> RequestError
    probabilities: torch.Tensor | None = None          # (len(accepted), 10)
    explain: dict = field(default_factory=dict)        # row index asking why -> its Request
    explanations: dict = field(default_factory=dict)   # row index -> what its answer adds: target, attributions
    requests: int = 0                                  # TorchServe requests the rows came in

    def request(self, idx: int) -> int:
        """The TorchServe request that row idx belongs to. TorchServe's KServe envelopes pass on the
        instances or inputs of a batch's first request only: rows that do not match the requests
        one to one are all request 0's, which answers for them all with one status."""
        return idx if self.size == self.requests else 0


def image_bytes(row: dict, content_types: dict) -> bytes:
    """The image of one request: the raw body, a multipart file, or JSON {"data": "<base64>"}.
    TorchServe passes a JSON body it could not parse on as bytes: its content type tells."""
    if not isinstance(row, dict):
        raise InvalidRequest("each KServe instance must be {\"data\": \"<base64-encoded image>\"} "
                             "or a 28x28 or 32x32 list of numbers")
    fields = ([name for name in PAYLOAD_FIELDS if row.get(name) is not None]
              or [name for name in row if name not in (TARGET, VERSUS)])
    if len(fields) != 1:
        raise InvalidRequest("send exactly one image: as the request body (Content-Type: image/png or "
                             "application/octet-stream), as one multipart file, or as JSON {\"data\": \"<base64>\"}")
    value = row[fields[0]]
    if isinstance(value, (bytes, bytearray)):
        if (content_types.get(fields[0]) or "").split(";")[0].strip().lower() == "application/json":
            raise InvalidRequest("the body is not valid JSON: send {\"data\": \"<base64-encoded image>\"}")
        return bytes(value)
    if isinstance(value, dict):  # TorchServe already parsed a JSON body
        value = value.get("data")
    if not isinstance(value, str):
        raise InvalidRequest("a JSON body must look like {\"data\": \"<base64-encoded image>\"}")
    encoded = value.partition(",")[2] if value.startswith("data:") else value  # data URLs too
    if not encoded:
        raise NotAnImage("the \"data\" field is empty: put the base64-encoded image in it")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the \"data\" field is not valid base64") from None


def explain_digit(row, name: str) -> int | None:
    """A digit an explanation names, if the client named one: the `name` field ("target" or
    "versus") of the JSON body, form or KServe v1 instance, or of a KServe v2 input's "parameters"."""
    places = [row, *(row.get(key) for key in (*PAYLOAD_FIELDS, "parameters"))] if isinstance(row, dict) else []
    found = [place[name] for place in places if isinstance(place, dict) and place.get(name) is not None]
    if not found:
        return None
    value = found[0].decode(errors="replace") if isinstance(found[0], (bytes, bytearray)) else found[0]
    if str(value).strip() not in {str(digit) for digit in range(10)}:
        raise InvalidRequest(f"\"{name}\" must be an integer from 0 to 9, not {json.dumps(value)}")
    return int(value)
