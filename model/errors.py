"""Every way the server refuses a request: one class per reason, each carrying its HTTP status.

The handler answers a `RequestError` with {"code": status, "type": reason, "message": ...} and
counts it in DigitRejections{Reason=reason}; HTTP_STATUS, derived from the classes, serves the
tests and checks that read answers back. The classes live in model/ because the shared
preprocessing (model/preprocess.py) raises the image ones, in training and tests as in the
handler; the handler raises those about the request itself.
"""


class RequestError(ValueError):
    """A request the server refuses. `reason` names the class of mistake (the answer's "type"),
    `status` is the HTTP status it is answered with."""

    reason = "invalid_request"
    status = 400


class InvalidRequest(RequestError):
    """The request does not carry one image or tensor the way the API takes it."""


class NotAnImage(RequestError):
    reason = "not_an_image"


class ImageTooLarge(RequestError):
    reason = "image_too_large"
    status = 413


class BlankImage(RequestError):
    """The image holds no digit: blank, too little contrast, or only paper, lines or texture."""

    reason = "no_digit_found"
    status = 422


class TooManyExplanations(RequestError):
    """More explanations in one batch than `handler.explain_max_per_batch`: retry, so predictions keep flowing."""

    reason = "too_many_explanations"
    status = 429
    retry_after_s = 1     # a batch takes milliseconds: by then the next one has room


class TooManyPixels(RequestError):
    """Its batch has already decoded `handler.max_pixels_per_batch` pixels: retry, so no batch
    outlasts responseTimeout. An image within its share of a batch is never refused so."""

    reason = "too_many_pixels"
    status = 429
    retry_after_s = 1


class ForHeavyLane(RequestError):
    """An image of more than `handler.fast_lane_max_pixels` in a request nginx sent to the fast
    lane, marked with the `marker` header: answered before it is decoded, so that nginx re-sends
    the request to the heavy lane (`handler.heavy_lane`). A client never sees this answer;
    requests without the marker (straight to TorchServe) are decoded wherever they arrive."""

    reason = "for_heavy_lane"
    status = 421          # Misdirected Request: "not this server, send it to another"
    marker = "X-Fast-Lane"


class InternalError(RequestError):
    """Not the client's fault: an unexpected failure on one image, logged with its traceback."""

    reason = "internal_error"
    status = 500


HTTP_STATUS = {error.reason: error.status for error in RequestError.__subclasses__()}
