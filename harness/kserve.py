"""KServe's side of the tests (tests/test_kserve.py on a TorchServe with the pod's settings,
tests/test_kserve_pod.py on the pod): deploy/kserve's config, KServe v1 and v2 bodies, and
their answers read back as the plain API's."""
import base64
import json

import numpy as np
import requests

from configuration import server_properties
from harness.server import REPO
from training.user_styles import mnist_png

DEPLOY = REPO / "deploy" / "kserve"
ROUTES = {"kserve": ("v1/models/mnist:predict", "v1/models/mnist:explain"),
          "kservev2": ("v2/models/mnist/infer", "v2/models/mnist/explain")}
DIGITS = 24   # test digits sent in one request and compared with the plain API's answers
BAD_ROWS = {  # (v1 instance, v2 input) and the error each must get
    "bad base64": ({"data": "not base64!"}, {"name": "x", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]},
                   400, "invalid_request"),
    "not an image": ({"data": "bm90IGFuIGltYWdl"},
                     {"name": "x", "shape": [1], "datatype": "BYTES", "data": ["bm90IGFuIGltYWdl"]},
                     400, "not_an_image"),
    "wrong shape": ([[1.0, 2.0, 3.0]], {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]},
                    400, "invalid_request"),
    "not standardized": ([[100.0] * 32] * 32, {"name": "x", "shape": [1, 32, 32], "datatype": "FP32",
                                                "data": [100.0] * 1024}, 400, "invalid_request"),
    "blank digit": ([[0] * 28] * 28, {"name": "x", "shape": [28, 28], "datatype": "UINT8", "data": [0] * 784},
                    422, "no_digit_found"),
}


def deploy_settings() -> dict:
    return server_properties(DEPLOY / "config" / "config.properties")


def png_row(envelope: str, image: np.ndarray, name: str, target: int | None = None) -> dict:
    """An MNIST digit as a PNG in one v1 instance (`kserve`) or v2 input (`kservev2`)."""
    data = base64.b64encode(mnist_png(image)).decode()
    if envelope == "kserve":
        return {"data": data} if target is None else {"data": data, "target": target}
    row = {"name": name, "shape": [1], "datatype": "BYTES", "data": [data]}
    return row if target is None else {**row, "parameters": {"target": target}}


def post(url: str, envelope: str, rows: list, explain: bool = False,
         headers: dict | None = None) -> tuple[int, list[dict]]:
    """POST one KServe request to the server at `url`; its status and each instance's or
    input's answer, in order."""
    body = {"instances": rows} if envelope == "kserve" else {"inputs": rows}
    response = requests.post(f"{url}/{ROUTES[envelope][explain]}", json=body, headers=headers, timeout=60)
    reply = response.json()
    if envelope == "kserve":
        items = reply["explanations" if explain else "predictions"]
    else:
        assert [output["name"] for output in reply["outputs"]] == [row["name"] for row in rows]
        assert {(output["datatype"], tuple(output["shape"])) for output in reply["outputs"]} == {("BYTES", (1,))}
        items = [output["data"][0] for output in reply["outputs"]]
    return response.status_code, [json.loads(item) for item in items]
