#!/usr/bin/env python3
"""Container HEALTHCHECK: exit 0 when TorchServe's /ping answers Healthy, else 1.

Token auth covers /ping too, so the inference key is read from key_file.json (KEY_FILE, in
the working directory by default), which TorchServe writes at every start. Standard library
only: the image needs no curl. INFERENCE_PORT is the one container_start.sh listens on.
"""
import json
import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('INFERENCE_PORT', '8080')}/ping"
    try:
        with open(os.environ.get("KEY_FILE", "key_file.json")) as keys:
            key = json.load(keys)["inference"]["key"]
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=4) as response:
            status = json.load(response).get("status")
    except (OSError, ValueError, KeyError) as error:   # no key file or server, HTTP error, bad JSON
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    print(f"{url}: {status}")
    return 0 if status == "Healthy" else 1


if __name__ == "__main__":
    sys.exit(main())
