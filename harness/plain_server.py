"""The plain-Python reference `make bench` measures TorchServe against: FastAPI on uvicorn, one
worker process, the same weights, temperature and preprocessing (model/preprocess.py), the same
answer JSON for an image sent as the request body, and the same bearer-token check. Bench-only:
no batching, no metrics, no explanations, no KServe envelopes, errors as FastAPI makes them.

    PLAIN_SERVER_KEY=secret uvicorn harness.plain_server:app --port 8090 --workers 1

The model runs eager on torch's own thread count, inside the event loop: one request at a time,
as the app this project grew out of served them.
"""
import json
import os

import torch
import yaml
from fastapi import FastAPI, HTTPException, Request, Response

from harness.server import REPO, WEIGHTS
from model.preprocess import ImageRejected, decode_image, normalize_digit, to_model_input
from training.evaluate import load_model, served_temperature

MAX_PIXELS = int(yaml.safe_load((REPO / "config" / "model-config.yaml").read_text())["handler"]["max_pixels"])
MODEL = load_model(str(WEIGHTS))
TEMPERATURE = served_temperature(str(WEIGHTS))
KEY = os.environ.get("PLAIN_SERVER_KEY", "")

app = FastAPI()


@app.post("/predictions/mnist")
async def predict(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        raise HTTPException(400, "a valid Authorization: Bearer <key> header is required")
    try:
        digit = normalize_digit(decode_image(await request.body(), MAX_PIXELS))
    except ImageRejected as error:
        raise HTTPException(422, str(error)) from None
    with torch.inference_mode():
        probabilities = torch.softmax(MODEL(to_model_input(torch.from_numpy(digit)[None])) / TEMPERATURE, dim=1)[0]
    confidence, answer = probabilities.max(dim=0)
    body = {"digit": int(answer), "confidence": round(float(confidence), 6),
            "probabilities": [round(v, 6) for v in probabilities.tolist()]}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
