"""The plain-Python reference `make bench` measures TorchServe against: FastAPI on uvicorn, one
worker process, the same weights, temperature and preprocessing (model/preprocess.py), the same
answer JSON for an image sent as the request body, and the same bearer-token check. Bench-only:
no batching, no metrics, no explanations, no KServe envelopes, errors as FastAPI makes them.

    PLAIN_SERVER_KEY=secret uvicorn --factory harness.plain_server:create_app --port 8090 --workers 1
    with plain_python_server() as server: ...   # the same on a free port (make bench, tests)

The model runs eager inside the event loop, one request at a time, on one torch thread: with
torch's default (a thread per core) a lone request waited 30-200 ms for a thread descheduled by
other work on a busy 2-core machine, a reference too weak to be worth beating. The weights load
and the thread count is set when uvicorn builds the app (create_app), not on import.
"""
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
import torch
from fastapi import FastAPI, HTTPException, Request, Response

from harness.server import REPO, WEIGHTS, free_ports
from configuration import handler_settings
from model.errors import RequestError
from model.inference import answer, load_model, probabilities, served_temperature
from model.preprocess import prepare, to_model_input

def create_app() -> FastAPI:
    """The app, its weights loaded and torch on one thread: in the uvicorn process that serves it."""
    max_pixels = handler_settings()["max_pixels"]
    model, temperature = load_model(str(WEIGHTS)), served_temperature(str(WEIGHTS))
    key = os.environ.get("PLAIN_SERVER_KEY", "")
    torch.set_num_threads(1)
    app = FastAPI()

    @app.post("/predictions/mnist")
    async def predict(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {key}":
            raise HTTPException(400, "a valid Authorization: Bearer <key> header is required")
        try:
            digit = prepare(await request.body(), max_pixels)
        except RequestError as error:
            raise HTTPException(error.status, str(error)) from None
        with torch.inference_mode():
            body = answer(probabilities(model, to_model_input(torch.from_numpy(digit)[None]), temperature)[0].tolist())
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    return app


@dataclass
class PlainServer:
    url: str    # where predictions go
    key: str    # the bearer token it wants
    pid: int


@contextlib.contextmanager
def plain_python_server() -> Iterator[PlainServer]:
    """This app on uvicorn, one worker, on a free port, once it answers HTTP; stopped on exit."""
    port, key = free_ports(1)[0], "plain-python"
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "harness.plain_server:create_app",
                                "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
                                "--log-level", "warning"],
                               cwd=REPO, env={**os.environ, "PLAIN_SERVER_KEY": key, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)   # any answer: it is up
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the plain-Python reference server did not start")
            time.sleep(0.2)
        yield PlainServer(f"http://127.0.0.1:{port}/predictions/mnist", key, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
