"""A real TorchServe serving the built archive, driven over real HTTP."""
import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from configuration import handler_settings, loaded_models, max_request_size, server_properties
from harness.hostile import png as declared_png
from harness.load import worker_deaths
from training import user_styles as styles

DIGITS = 500


def post_all(server, bodies, content_type="image/png", workers=16):
    """POST every body concurrently (so requests share TorchServe batches); responses in order."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda body: server.predict(body, content_type), bodies))


def test_mnist_digits_answer_as_in_process(server, test_set, in_process):
    images, labels = test_set[0][:DIGITS], test_set[1][:DIGITS]
    responses = post_all(server, [styles.mnist_png(a) for a in images])
    expected = in_process(images)
    assert [r.status_code for r in responses] == [200] * DIGITS
    answers = [r.json() for r in responses]
    assert [a["digit"] for a in answers] == expected.argmax(axis=1).tolist()
    got = np.array([a["probabilities"] for a in answers])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-4)
    assert [a["confidence"] for a in answers] == pytest.approx(got.max(axis=1).tolist())
    assert (expected.argmax(axis=1) == labels).mean() > 0.99


@pytest.mark.parametrize("style,minimum", [("dark_on_white", 0.99), ("transparent_canvas", 0.99),
                                           ("large_off_centre", 0.99), ("photo_jpeg", 0.95)])
def test_user_styles_are_recognized(server, test_set, style, minimum):
    rng = np.random.default_rng(1)
    images, labels = test_set[0][:DIGITS], test_set[1][:DIGITS]
    responses = post_all(server, [styles.STYLES[style](a, rng) for a in images], content_type=None)
    assert {r.status_code for r in responses} == {200}
    accuracy = np.mean([r.json()["digit"] == y for r, y in zip(responses, labels)])
    assert accuracy >= minimum, f"{style}: {accuracy:.1%}"


def blank_png():
    return styles.encode(Image.new("L", (64, 48), 230))


def oversized_png():
    return styles.encode(Image.new("1", (6000, 5000)))   # 30 Mpx, a 4 KB file


BAD_INPUTS = {
    "not an image": (b"%PDF-1.4 definitely not a picture", "application/octet-stream", 400, "not_an_image"),
    "empty body": (b"", "application/octet-stream", 400, "not_an_image"),
    "truncated png": (None, "image/png", 400, "not_an_image"),
    "over the pixel cap": (oversized_png(), "image/png", 413, "image_too_large"),
    "blank page": (blank_png(), "image/png", 422, "no_digit_found"),
    "json without data": (json.dumps({"image": 3}).encode(), "application/json", 400, "invalid_request"),
    "json list": (b"[1, 2, 3]", "application/json", 400, "invalid_request"),
    "bad base64": (json.dumps({"data": "not base64!"}).encode(), "application/json", 400, "invalid_request"),
}


@pytest.fixture(scope="module")
def bad_inputs(test_set):
    png = styles.mnist_png(test_set[0][0])
    return {name: (png[:len(png) // 2] if body is None else body, ctype, status, kind)
            for name, (body, ctype, status, kind) in BAD_INPUTS.items()}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gets_its_status_and_json_error(server, bad_inputs, name):
    body, content_type, status, kind = bad_inputs[name]
    response = server.predict(body, content_type)
    assert response.status_code == status
    error = response.json()
    assert error["code"] == status and error["type"] == kind
    assert len(error["message"]) > 20


def test_a_body_over_max_request_size_is_refused(server):
    response = server.predict(b"\0" * (max_request_size() + 1), "application/octet-stream")
    assert response.status_code == 413


def test_other_ways_to_send_an_image(server, test_set, in_process):
    image = test_set[0][1]
    png = styles.mnist_png(image)
    expected = int(in_process(image[None]).argmax())
    as_json = server.predict(json.dumps({"data": base64.b64encode(png).decode()}), "application/json")
    as_data_url = server.predict(json.dumps({"data": "data:image/png;base64," + base64.b64encode(png).decode()}),
                                 "application/json")
    as_form = requests.post(f"{server.inference}/predictions/mnist", files={"file": ("d.png", png, "image/png")},
                            headers={"Authorization": f"Bearer {server.key()}"}, timeout=30)
    for response in (as_json, as_data_url, as_form):
        assert response.status_code == 200, response.text
        assert response.json()["digit"] == expected


MESSAGES = {   # what a client sends -> the status, type and message it gets
    "empty data field": (json.dumps({"data": ""}).encode(), "application/json", 400, "not_an_image",
                         'the "data" field is empty: put the base64-encoded image in it'),
    "malformed json": (b'{"data": "iVBORw0KGgo', "application/json", 400, "invalid_request",
                       'the body is not valid JSON: send {"data": "<base64-encoded image>"}'),
    "over Pillow's own limit": (declared_png(40_000, 40_000, bit_depth=1), "image/png", 413, "image_too_large",
                                f"the image is 1600000000 pixels; the limit is {handler_settings()['max_pixels']}: "
                                "send a smaller image"),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_an_error_message_says_what_was_wrong(server, name):
    body, content_type, status, kind, message = MESSAGES[name]
    response = server.predict(body, content_type)
    assert (response.status_code, response.json()) == (status, {"code": status, "type": kind, "message": message})


def test_two_files_under_one_form_field_answer_for_the_last(server, test_set):
    """TorchServe 0.12's worker keeps only the last value of a repeated form field (ts/service.py
    folds the parameters into a dict), so the handler never sees the first file and cannot refuse
    the request: the last file is answered. The error table lists it; this fails once that changes."""
    first, last = (styles.mnist_png(test_set[0][i]) for i in (0, 1))   # a 7, then a 2
    response = requests.post(f"{server.inference}/predictions/mnist", timeout=30,
                             files=[("data", ("a.png", first, "image/png")), ("data", ("b.png", last, "image/png"))],
                             headers={"Authorization": f"Bearer {server.key()}"})
    assert (response.status_code, response.json()["digit"]) == (200, 2)


def test_a_binary_body_sent_as_a_form_is_refused_by_the_frontend(server, test_set):
    """A body with Content-Type application/x-www-form-urlencoded is decoded as a form by
    TorchServe's frontend before any handler runs; bytes that are no valid form escape make it
    answer 500 ErrorDataDecoderException (the error table lists it). Send images as image/* or
    application/octet-stream."""
    response = server.predict(b"\x89PNG\r\n%zz&=\xff", "application/x-www-form-urlencoded")
    assert (response.status_code, response.json()["type"]) == (500, "ErrorDataDecoderException")


def test_bad_requests_do_not_disturb_their_batch_peers(server, test_set, in_process, bad_inputs):
    images = test_set[0][DIGITS:DIGITS + 200]
    expected = in_process(images).argmax(axis=1)
    bad = list(bad_inputs.values())
    jobs = []
    for i, image in enumerate(images):
        jobs.append(("good", i, styles.mnist_png(image), "image/png"))
        body, content_type, status, kind = bad[i % len(bad)]
        jobs.append(("bad", (status, kind), body, content_type))
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda job: server.predict(job[2], job[3]), jobs))
    for (what, want, _, _), response in zip(jobs, responses):
        if what == "good":
            assert response.status_code == 200 and response.json()["digit"] == expected[want]
        else:
            assert (response.status_code, response.json()["type"]) == want
    assert worker_deaths(server) == []


def test_token_is_required(server, test_set):
    png = styles.mnist_png(test_set[0][0])
    no_token = requests.post(f"{server.inference}/predictions/mnist", data=png,
                             headers={"Content-Type": "image/png"}, timeout=10)
    wrong = server.predict(png, token="wrong-key")
    right = server.predict(png)
    assert (no_token.status_code, wrong.status_code, right.status_code) == (400, 400, 200)
    assert requests.get(f"{server.inference}/ping", timeout=10).status_code == 400


def test_models_cannot_be_registered(server):
    headers = {"Authorization": f"Bearer {server.key('management')}"}
    for url in ("https://example.invalid/evil.mar", "file:///etc/passwd"):
        response = requests.post(f"{server.management}/models", params={"url": url}, headers=headers, timeout=10)
        assert response.status_code in (403, 405), response.text
    models = requests.get(f"{server.management}/models", headers=headers, timeout=10).json()["models"]
    assert sorted(m["modelName"] for m in models) == sorted(loaded_models(server_properties()))


def counters(server) -> dict:
    """Our handler's counters on /metrics, summed per metric and label value."""
    text = requests.get(f"{server.metrics}/metrics", timeout=10).text
    found = {}
    for name, labels, value in re.findall(r"^(Digit\w+)\{(.*)\} ([0-9.eE+-]+)$", text, re.M):
        label = re.search(r'(?:Digit|Reason)="([^"]*)"', labels)
        key = (name, label.group(1) if label else "")
        found[key] = found.get(key, 0.0) + float(value)
    return found


def wait_for_counters(server, expected_moves: dict, before: dict, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        after = counters(server)
        moved = {key: after.get(key, 0) - before.get(key, 0) for key in expected_moves}
        if moved == expected_moves or time.monotonic() > deadline:
            return moved, after
        time.sleep(0.5)


def test_custom_metrics_count_exactly(server, test_set, in_process):
    images = test_set[0][2000:2037]
    predicted = in_process(images).argmax(axis=1)
    before = counters(server)
    post_all(server, [styles.mnist_png(a) for a in images])
    server.predict(blank_png())
    server.predict(b"nope", "application/octet-stream")
    expected = {("DigitPredictions", str(d)): float((predicted == d).sum()) for d in range(10)}
    expected[("DigitRejections", "no_digit_found")] = 1.0
    expected[("DigitRejections", "not_an_image")] = 1.0
    moved, after = wait_for_counters(server, expected, before)
    assert moved == expected
    assert after[("DigitPreprocessMs", "")] > before.get(("DigitPreprocessMs", ""), 0)
    text = requests.get(f"{server.metrics}/metrics", timeout=10).text
    assert "ts_inference_requests_total" in text and "ts_queue_latency_microseconds" in text


def test_logs_hold_one_access_line_per_request_and_no_per_request_chatter(server, test_set):
    """config/log4j2.xml: TorchServe's default DEBUG chatter (several ts_log lines per request)
    is off, while the access log still records every request."""
    bodies = [styles.mnist_png(a) for a in test_set[0][3000:3040]]
    access_before = server.log("access_log.log").count("/predictions/mnist")
    assert {r.status_code for r in post_all(server, bodies)} == {200}
    deadline = time.monotonic() + 10
    while server.log("access_log.log").count("/predictions/mnist") < access_before + len(bodies):
        assert time.monotonic() < deadline, "the access log lost requests"
        time.sleep(0.2)
    ts_log = server.log("ts_log.log")
    assert "Model mnist loaded." in ts_log   # INFO lines are kept
    for chatter in ("Sending response for jobId", "Waiting time ns", "result=[METRICS]"):
        assert chatter not in ts_log
