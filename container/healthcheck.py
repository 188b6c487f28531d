#!/usr/bin/env python3
"""Health and readiness of a TorchServe serving mnist: exit 0 only when the model answers.

    healthcheck.py [CONFIG] [--all-workers]

TorchServe's /ping says Healthy as soon as the frontend is up, seconds before a worker can
answer, and goes on saying it after every worker died. So this asks the management API for the
workers of every model the server starts (mnist and its heavy lane; at least one READY each,
every one with --all-workers, what start-up waits for), then sends a known digit, MNIST test
image 0 (a 7), to mnist's inference API and checks the answer.

CONFIG is the server's config.properties (config/config.properties in the working directory by
default); its addresses are used with TorchServe's TS_<KEY> environment overrides, and
INFERENCE_PORT (the container's) moves the inference port. With token authorization on, the
keys come from KEY_FILE (key_file.json in the working directory by default), which TorchServe
writes where it starts. Under a KServe service envelope (service_envelope or
TS_SERVICE_ENVELOPE: kserve, kservev2) the digit goes in that envelope's body.
Standard library only: the image has no requests or curl. Used by the container's HEALTHCHECK,
the KServe manifest's probes and scripts/wait_ready.sh.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.request
from urllib.parse import urlsplit

MODEL = "mnist"
KNOWN_DIGIT = 7
KNOWN_DIGIT_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAwUlEQVR42mNgGDaAEUKFpD77sfTFHeyS9xQYGBg+X4UKPuk6w8DAwMDAAuGm"
    "6l/TMnSweCzLwPDntSTDozPIOhkYGBgYBA3PmDIw/Lh1XShnGi5nBP+9KIRLTuzl/2AokwlDMlv0/U1cGq1//rPD6fHWf7tZcclxnv1hhVNj"
    "3b9tOOW8f3+wxCUnfPffMlxyzKf/3VbGJan2758vLjn5B/+KGXF78Z8JLjnbT+iSSGFrw8Nw9wuKJAsy56LzO+ITGABpETyQcCy90wAAAABJ"
    "RU5ErkJggg==")
MANAGEMENT_TIMEOUT_S = 3
PREDICTION_TIMEOUT_S = 5


class Unhealthy(Exception):
    pass


def settings(path: str) -> dict:
    """config.properties as TorchServe reads it: key=value lines, TS_<KEY> variables on top."""
    try:
        with open(path) as config:
            pairs = [line.split("=", 1) for line in config if "=" in line and not line.lstrip().startswith("#")]
        found = {key.strip(): value.strip() for key, value in pairs}
    except OSError as error:
        raise Unhealthy(f"cannot read the server's config: {error}") from error
    if found.get("enable_envvars_config") == "true":
        found.update({key[3:].lower(): value for key, value in os.environ.items() if key.startswith("TS_")})
    return found


def local_url(address: str, port: str | None = None) -> str:
    """Where to reach an address TorchServe binds (0.0.0.0 means every interface: use loopback)."""
    parts = urlsplit(address)
    host = "127.0.0.1" if parts.hostname in (None, "0.0.0.0") else parts.hostname
    return f"{parts.scheme}://{host}:{port or parts.port}"


def call(url: str, key: str | None, timeout: float, body: bytes | None = None, content_type: str = ""):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError) as error:   # refused, timed out, HTTP error, not JSON
        raise Unhealthy(f"{url}: {error}") from error


def envelope_body(envelope: str) -> tuple[bytes, str]:
    if envelope == "kserve":
        return json.dumps({"instances": [{"data": KNOWN_DIGIT_PNG}]}).encode(), "application/json"
    if envelope == "kservev2":
        row = {"name": "healthcheck", "shape": [1], "datatype": "BYTES", "data": [KNOWN_DIGIT_PNG]}
        return json.dumps({"inputs": [row]}).encode(), "application/json"
    return base64.b64decode(KNOWN_DIGIT_PNG), "image/png"


def envelope_answer(envelope: str, reply) -> dict:
    """Our handler's answer; the envelopes carry it as JSON text."""
    if envelope == "kserve":
        return json.loads(reply["predictions"][0])
    if envelope == "kservev2":
        return json.loads(reply["outputs"][0]["data"][0])
    return reply


def loaded_models(config: dict) -> list[str]:
    """The model names the server starts, each with workers of its own: a model_snapshot's
    (KServe's), which TorchServe restores instead of load_models, else load_models' ("name=file.mar,...":
    mnist and its heavy lane); mnist where the config names none."""
    if config.get("model_snapshot"):
        return list(json.loads(config["model_snapshot"]).get("models", {})) or [MODEL]
    entries = [entry.strip() for entry in config.get("load_models", "").split(",") if entry.strip()]
    return [entry.rpartition("=")[0] or entry.removesuffix(".mar") for entry in entries] or [MODEL]


def check(config: dict, all_workers: bool) -> str:
    """What was checked, or Unhealthy saying why not."""
    key_file = os.environ.get("KEY_FILE", "key_file.json")
    keys = {}
    if config.get("disable_token_authorization") != "true":
        try:
            with open(key_file) as found:
                keys = json.load(found)
        except (OSError, ValueError) as error:
            raise Unhealthy(f"no TorchServe keys: {error}") from error
    management = local_url(config.get("management_address", "http://127.0.0.1:8081"))
    ready = total = 0
    for model in loaded_models(config):
        described = call(f"{management}/models/{model}", keys.get("management", {}).get("key"), MANAGEMENT_TIMEOUT_S)
        statuses = [worker["status"] for worker in described[0]["workers"]]
        if not statuses.count("READY") or (all_workers and statuses.count("READY") < len(statuses)):
            raise Unhealthy(f"workers of {model}: {statuses or 'none'}, not READY")
        ready, total = ready + statuses.count("READY"), total + len(statuses)

    inference = local_url(config.get("inference_address", "http://127.0.0.1:8080"), os.environ.get("INFERENCE_PORT"))
    envelope = config.get("service_envelope", "")
    body, content_type = envelope_body(envelope)
    reply = call(f"{inference}/predictions/{MODEL}", keys.get("inference", {}).get("key"), PREDICTION_TIMEOUT_S,
                 body, content_type)
    try:
        digit = envelope_answer(envelope, reply)["digit"]
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise Unhealthy(f"unexpected answer to the known digit: {reply}") from error
    if digit != KNOWN_DIGIT:
        raise Unhealthy(f"the known {KNOWN_DIGIT} was answered {digit}")
    return f"{ready}/{total} workers READY, the known {KNOWN_DIGIT} answered right"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="config/config.properties")
    parser.add_argument("--all-workers", action="store_true", help="every worker READY, not just one")
    args = parser.parse_args()
    try:
        print(f"healthy: {check(settings(args.config), args.all_workers)}")
    except Unhealthy as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
