"""nginx in front of a real TorchServe (deploy/nginx/): the page and the API on one origin, the
body limit equal to TorchServe's, forms of too many fields refused (guard.js), the per-client
rate and connection limits, the security headers, gzip, and nothing of TorchServe reachable but
predictions, explanations and /ping. The hostile-load test is tests/test_hostile_load.py."""
import gzip
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from configuration import handler_settings, heavy_lanes, server_properties
from harness.server import REPO, free_ports
from harness.hostile_load import largest_image, many_parts_body
from harness.load import frontend_counters, requests_per_model
from harness.nginx import PROXY, start_proxy, stop_proxy
from model.errors import ForHeavyLane
from training.user_styles import mnist_png

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_FILES = sorted(path.name for path in (REPO / "web").iterdir())
MEDIA_TYPES = {"html": "text/html", "css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}


def call(proxy, method: str, path: str, key: str | None = None, headers: dict | None = None,
         **kwargs) -> requests.Response:
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    return requests.request(method, proxy.url + path, headers=headers, timeout=30, **kwargs)


def test_page_and_api_share_one_origin(proxy, server, test_set):
    page = call(proxy, "GET", "/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert (REPO / "web" / "index.html").read_text() == page.text
    for name in PAGE_FILES:
        served = call(proxy, "GET", f"/{name}")
        assert served.content == (REPO / "web" / name).read_bytes()
        assert served.headers["Content-Type"].split(";")[0] == MEDIA_TYPES[name.rsplit(".", 1)[1]]
    body = mnist_png(test_set[0][0])
    assert call(proxy, "POST", "/predictions/mnist", server.key(), data=body).json() == server.predict(body).json()
    explained = call(proxy, "POST", "/explanations/mnist", server.key(), data=body).json()
    assert (explained["digit"], explained["target"]) == (7, 7) and len(explained["attributions"]) == 32
    assert call(proxy, "GET", "/ping", server.key()).json() == {"status": "Healthy"}


def test_the_page_holds_no_secret(proxy, server):
    keys = [server.key(kind) for kind in ("inference", "management", "API")]
    for name in ["", *PAGE_FILES]:
        text = call(proxy, "GET", f"/{name}").text
        assert not [key for key in keys if key in text]
    assert call(proxy, "GET", "/key_file.json").status_code == 404


def test_security_headers_on_every_answer(proxy, server, test_set):
    answers = [call(proxy, "GET", "/"), call(proxy, "GET", "/app.js"), call(proxy, "GET", "/nothing-here"),
               call(proxy, "POST", "/predictions/mnist", server.key(), data=mnist_png(test_set[0][0])),
               call(proxy, "POST", "/predictions/mnist", "wrong-key", data=b"x"),
               call(proxy, "GET", "/predictions/mnist")]
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 400, 405]
    for answer in answers:
        assert answer.headers["Content-Security-Policy"] == CSP
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Server"] == "nginx"     # no version
        assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize("method, path", [
    ("GET", "/metrics"), ("GET", "/models"), ("GET", "/models/mnist"), ("OPTIONS", "/"),
    ("GET", "/api-description"), ("POST", "/v1/models/mnist:predict"), ("POST", "/v2/models/mnist/infer"),
    ("POST", "/token?type=inference"), ("POST", "/predictions/mnist/1.0/../../../models"),
    ("POST", "/predictions/mnist/..%2F..%2Fapi-description"), ("POST", "/predictions/%2e%2e/models"),
    ("GET", "/predictions/mnist"), ("PUT", "/explanations/mnist"), ("DELETE", "/ping"), ("GET", "/..%2Fconfig"),
])
def test_nothing_else_of_torchserve_is_reachable(proxy, server, method, path):
    """Only nginx answers these (its 400 or 404 page, or its 405 JSON); TorchServe never sees them."""
    answer = call(proxy, method, path, server.key())
    if answer.status_code == 405:
        assert answer.json()["type"] == "method_not_allowed"
    else:
        assert answer.status_code in (400, 404) and "<center>nginx</center>" in answer.text


def test_the_body_limit_is_torchserves(proxy, server):
    """A body of max_request_size bytes reaches TorchServe (which finds no image in it); one byte
    more is refused by nginx before it is read, with the limit in the answer."""
    limit = int(server_setting(server, "max_request_size"))
    assert int(proxy.setting(r"client_max_body_size (\d+);")) == limit
    at_limit = call(proxy, "POST", "/predictions/mnist", server.key(), data=bytes(limit))
    assert (at_limit.status_code, at_limit.json()["type"]) == (400, "not_an_image")
    over = call(proxy, "POST", "/predictions/mnist", server.key(), data=bytes(limit + 1))
    assert over.status_code == 413
    assert over.json() == {"code": 413, "type": "request_too_large", "limit_bytes": limit,
                           "message": f"the request body is over the limit of {limit} bytes: send a smaller image"}
    assert server.predict(bytes(limit + 1), "application/octet-stream").status_code == 413


def server_setting(server, key: str) -> str:
    return server_properties(server.workdir / "config" / "config.properties")[key]


def test_json_and_page_files_are_gzipped(proxy, server, test_set):
    """requests asks for gzip (Accept-Encoding) and undoes it; the raw stream shows it was used."""
    script = call(proxy, "GET", "/app.js", stream=True)
    assert script.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(script.raw.read()) == (REPO / "web" / "app.js").read_bytes()
    explained = call(proxy, "POST", "/explanations/mnist", server.key(), data=mnist_png(test_set[0][0]))
    assert explained.headers["Content-Encoding"] == "gzip" and explained.json()["digit"] == 7


@pytest.fixture
def own_proxy(server):
    """A proxy of its own, so that exhausting its rate limit spares the other tests'."""
    running = start_proxy(server.workdir / "config" / "config.properties", free_ports(1)[0])
    yield running
    stop_proxy(running)


def test_a_client_over_the_rate_limit_gets_429(own_proxy, server):
    """With the shipped limits: a burst of requests from one address is answered up to the
    burst (plus what the rate refills meanwhile), the rest 429 with a JSON body and Retry-After."""
    burst = int(own_proxy.setting(r"burst=(\d+)"))
    per_second = int(own_proxy.setting(r"rate=(\d+)r/s"))
    key = server.key()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: call(own_proxy, "GET", "/ping", key), range(4 * burst)))
    refilled = per_second * (time.monotonic() - started)
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 429}
    assert burst + 1 <= statuses.count(200) <= burst + 1 + refilled + 1
    refused = answers[statuses.index(429)]
    assert refused.json() == {"code": 429, "type": "rate_limited",
                              "message": "too many requests from this address: wait a second and retry"}
    assert refused.headers["Retry-After"] == "1" and refused.headers["Content-Security-Policy"] == CSP


def test_a_stopped_torchserve_is_told_as_json(tmp_path, server):
    config = tmp_path / "config.properties"
    dead_port = free_ports(1)[0]
    config.write_text(f"inference_address=http://127.0.0.1:{dead_port}\n"
                      f"max_request_size={server_setting(server, 'max_request_size')}\n")
    running = start_proxy(config, free_ports(1)[0])
    try:
        answer = call(running, "GET", "/ping", server.key())
    finally:
        stop_proxy(running)
    assert (answer.status_code, answer.json()["type"]) == (502, "server_unavailable")


def test_no_config_without_a_body_limit(tmp_path):
    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://127.0.0.1:8080\n")
    rendered = subprocess.run([sys.executable, str(PROXY), "render", "--ts-config", str(config)],
                              capture_output=True, text=True)
    assert rendered.returncode != 0 and "sets no max_request_size" in rendered.stderr


def test_a_form_of_too_many_fields_never_reaches_torchserve(proxy, server, test_set):
    """guard.js: a form of more fields than the API takes, multipart or urlencoded, and a request
    with two content types are refused by nginx with a JSON 400, and TorchServe's request counters
    do not move; the page's form (the image and a target) and a form within the limit pass."""
    limit = int(proxy.setting(r"set \$max_form_fields (\d+);"))
    before = frontend_counters(server)
    refused = [call(proxy, "POST", "/predictions/mnist", server.key(), data=body, headers={"Content-Type": kind})
               for body, kind in [many_parts_body(limit + 1), many_parts_body(), (b"a=1" + b"&a=1" * limit,
                                                                                  "application/x-www-form-urlencoded")]]
    for answer in refused:
        assert answer.status_code == 400 and answer.json()["type"] == "too_many_form_fields"
        assert f"at most {limit} fields" in answer.json()["message"]
        assert answer.headers["Content-Security-Policy"] == CSP
    two_types = raw_request(proxy, b"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1\r\n"
                            b"Authorization: Bearer " + server.key().encode() + b"\r\n\r\nx")
    assert b" 400 " in two_types.split(b"\r\n")[0] and b'"type":"invalid_request"' in two_types
    moved = frontend_counters(server) - before   # (its own /metrics call counts as a 2XX)
    assert moved["Requests4XX"] == moved["Requests5XX"] == 0
    page_form = call(proxy, "POST", "/explanations/mnist", server.key(),
                     files={"data": ("digit.png", mnist_png(test_set[0][0]))}, data={"target": "3"})
    assert (page_form.status_code, page_form.json()["target"]) == (200, 3)
    within, within_type = many_parts_body(limit)   # same-named fields, folded into one "x" by TorchServe
    assert call(proxy, "POST", "/predictions/mnist", server.key(), data=within,
                headers={"Content-Type": within_type}).json()["type"] == "not_an_image"   # the handler's answer


def test_costly_requests_go_to_the_heavy_lane(proxy, server, test_set):
    """Two lanes: a digit is answered by the model's fast lane; an explanation, a body over the
    fast lane's byte limit, and an image over handler.fast_lane_max_pixels (handed over by the fast
    lane with its 421, the body re-sent) by its heavy lane, and each client gets its digit. A
    client's own marker header reaches no lane (else the heavy lane would answer 421 itself)."""
    heavy = heavy_lanes(server_properties(server.workdir / "config" / "config.properties"))["mnist"]
    digit = mnist_png(test_set[0][0])
    padded = digit + bytes(int(proxy.setting(r"set \$fast_lane_max_body (\d+);")))   # Pillow stops at IEND
    large = largest_image(4 * handler_settings()["fast_lane_max_pixels"])
    marker = {ForHeavyLane.marker: "1"}
    cases = [("predictions", digit, {}, {"mnist": 1}), ("predictions", padded, {}, {heavy: 1}),
             ("predictions", large, {}, {"mnist": 1, heavy: 1}), ("explanations", large, marker, {heavy: 1})]
    for endpoint, body, headers, lanes in cases:
        direct = server.predict(body, endpoint=endpoint).json()["digit"]   # no marker: decoded where it lands
        before = requests_per_model(server)
        answer = call(proxy, "POST", f"/{endpoint}/mnist", server.key(), headers=headers, data=body)
        assert (answer.status_code, answer.json()["digit"]) == (200, direct), answer.text
        assert +(requests_per_model(server) - before) == lanes, (endpoint, len(body))


def raw_request(proxy, request: bytes) -> bytes:
    """`request` sent as is over one connection, and what came back until nginx closed it."""
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: connection.recv(65536), b""))


def test_requests_in_progress_per_address_are_capped(own_proxy, server, test_set):
    """Uploads that trickle their body hold nginx's connections, never TorchServe's: past
    the limit of them from one address the next request is refused 429, while
    another address is answered (the limit is read from the rendered configuration)."""
    host, port = own_proxy.url.removeprefix("http://").split(":")
    limit = int(own_proxy.setting(r"limit_conn connections (\d+);"))
    head = (f"POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n"
            f"Authorization: Bearer {server.key()}\r\n\r\n").encode()
    trickling = [socket.create_connection((host, int(port)), timeout=30, source_address=("127.0.0.2", 0))
                 for _ in range(limit)]
    try:
        for connection in trickling:
            connection.sendall(head + b"x")
        time.sleep(0.5)   # nginx has read every header
        over = requests.post(f"{own_proxy.url}/predictions/mnist", data=mnist_png(test_set[0][0]), timeout=30,
                             headers={"Authorization": f"Bearer {server.key()}"})
        assert over.status_code == 200   # another address (127.0.0.1)
        with socket.create_connection((host, int(port)), timeout=30, source_address=("127.0.0.2", 0)) as extra:
            extra.sendall(head + bytes(1000))
            assert b" 429 " in extra.recv(65536).split(b"\r\n")[0]
    finally:
        for connection in trickling:
            connection.close()
