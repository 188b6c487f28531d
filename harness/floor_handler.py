"""A handler that does no work: `make bench` serves it with the shipped model settings to
measure TorchServe's own cost per request (HTTP, queueing, batching, the worker round trip),
the floor under which no handler can answer."""
import json

ANSWER = json.dumps({"digit": 7, "confidence": 1.0, "probabilities": [0.0] * 7 + [1.0] + [0.0] * 2},
                    separators=(",", ":"))


def handle(data, context):
    if data is None:  # TorchServe's call at load time
        return None
    for idx in range(len(data)):
        context.set_response_content_type(idx, "application/json")
    return [ANSWER] * len(data)
