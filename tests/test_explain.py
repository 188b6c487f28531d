"""POST /explanations/mnist on a real TorchServe: Integrated Gradients maps over the 32x32 input
the model saw, checked against the trained model in-process (completeness: a map adds up to how
far its target's logit moved from the blank page's)."""
import base64
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from configuration import handler_settings
from harness.explanations import incompleteness
from harness.explanations import logit_gap as harness_logit_gap
from harness.server import serving
from model.errors import TooManyExplanations
from model.preprocess import prepare
from training.user_styles import large_off_centre, mnist_png, photo_jpeg

MAX_PER_BATCH = handler_settings()["explain_max_per_batch"]


@pytest.fixture(scope="module")
def logit_gap(trained_model):
    """logit_target(digit) - logit_target(blank page), in-process: what a complete map sums to."""
    return lambda image, target: harness_logit_gap(trained_model, image, target)


def explain(server, image: np.ndarray, target: int | None = None):
    if target is None:
        return server.predict(mnist_png(image), endpoint="explanations")
    body = {"data": base64.b64encode(mnist_png(image)).decode(), "target": target}
    return server.predict(json.dumps(body), "application/json", endpoint="explanations")


def assert_complete(answer: dict, gap: float):
    """The map sums to the logit gap up to the convergence delta it reports, which stays within
    10% of the gap (of one logit when the gap is smaller: a 1 barely moves from the blank page)."""
    assert not incompleteness(answer, gap)


def test_explanations_and_predictions_share_batches(server, test_set, in_process, logit_gap):
    images = test_set[0][:16]
    jobs = [(image, i < MAX_PER_BATCH) for i, image in enumerate(images)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda job: explain(server, job[0]) if job[1] else server.predict(mnist_png(job[0])),
                                  jobs))
    expected = in_process(images)
    for (image, explained), response, probabilities in zip(jobs, responses, expected):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["digit"] == probabilities.argmax()
        np.testing.assert_allclose(answer["probabilities"], probabilities, atol=2e-6)
        assert ("attributions" in answer) == explained
        if explained:
            assert answer["target"] == answer["digit"]
            assert_complete(answer, logit_gap(image, answer["target"]))


def test_a_named_target_is_explained(server, test_set, logit_gap):
    image = test_set[0][0]                     # a 7
    as_json = explain(server, image, target=3).json()
    as_form = requests.post(f"{server.inference}/explanations/mnist", data={"target": "1"},
                            files={"file": ("d.png", mnist_png(image), "image/png")},
                            headers={"Authorization": f"Bearer {server.key()}"}, timeout=30).json()
    predicted = explain(server, image).json()
    assert (as_json["target"], as_form["target"], predicted["target"]) == (3, 1, 7)
    for answer in (as_json, as_form, predicted):
        assert answer["digit"] == 7
        assert_complete(answer, logit_gap(image, answer["target"]))
    assert not np.allclose(as_json["attributions"], predicted["attributions"])


@pytest.mark.parametrize("style", [large_off_centre, photo_jpeg])
def test_an_explanation_carries_the_normalized_digit_it_was_drawn_on(server, test_set, style):
    """The answer's normalized_digit is normalize_digit's output for the image sent, to the pixel
    (a digit on a large page or in a photo, so it differs from the MNIST original); predictions
    do not carry it."""
    image = style(test_set[0][3], np.random.default_rng(3))
    answer = server.predict(image, "application/octet-stream", endpoint="explanations").json()
    expected = prepare(image, handler_settings()["max_pixels"])
    np.testing.assert_array_equal(np.array(answer["normalized_digit"]), expected)
    assert not np.array_equal(expected, test_set[0][3])
    assert "normalized_digit" not in server.predict(image, "application/octet-stream").json()


@pytest.mark.parametrize("target", [12, -1, "seven", 2.5, True])
def test_a_target_that_is_no_digit_is_refused(server, test_set, target):
    response = explain(server, test_set[0][0], target)
    assert response.status_code == 400
    error = response.json()
    assert (error["code"], error["type"]) == (400, "invalid_request") and "target" in error["message"]


def test_a_target_of_true_is_refused_as_sent(server, test_set):
    error = explain(server, test_set[0][0], True).json()
    assert error["message"] == '"target" must be an integer from 0 to 9, not true'


def test_bad_explanations_do_not_disturb_their_batch_peers(server, test_set, in_process, logit_gap):
    images = test_set[0][100:103]
    bad = [(b"%PDF-1.4", "application/octet-stream", 400, "not_an_image"),
           (mnist_png(np.zeros((28, 28), np.uint8)), "image/png", 422, "no_digit_found")]
    jobs = [("good", image, "image/png") for image in images] + [("bad", body, ctype) for body, ctype, *_ in bad]
    with ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(lambda job: server.predict(
            mnist_png(job[1]) if job[0] == "good" else job[1], job[2], endpoint="explanations"), jobs))
    for image, response, probabilities in zip(images, responses, in_process(images)):
        assert response.status_code == 200 and response.json()["digit"] == probabilities.argmax()
        assert_complete(response.json(), logit_gap(image, response.json()["target"]))
    for (_, _, status, kind), response in zip(bad, responses[len(images):]):
        assert (response.status_code, response.json()["code"], response.json()["type"]) == (status, status, kind)


@pytest.fixture(scope="module")
def slow_batches():
    """One worker that waits up to 1 s to fill batches of 16: concurrent requests share a batch."""
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {"mnist": {"1.0": {
        "defaultVersion": True, "marName": "mnist.mar", "minWorkers": 1, "maxWorkers": 1,
        "batchSize": 16, "maxBatchDelay": 1000, "responseTimeout": 10}}}}
    with serving(overrides={"model_snapshot": json.dumps(snapshot)}) as running:
        yield running


def test_a_batch_explains_at_most_its_limit_and_predicts_everything(slow_batches, test_set, logit_gap):
    images = test_set[0][200:216]
    explained = [i % 4 != 0 for i in range(len(images))]        # 12 explanations, 4 predictions
    with ThreadPoolExecutor(len(images)) as pool:
        responses = list(pool.map(lambda job: slow_batches.predict(
            mnist_png(job[0]), endpoint="explanations" if job[1] else "predictions"), zip(images, explained)))
    statuses = [r.status_code for r, e in zip(responses, explained) if e]
    assert [r.status_code for r, e in zip(responses, explained) if not e] == [200] * 4
    assert set(statuses) == {200, 429} and statuses.count(200) >= MAX_PER_BATCH
    for image, response in zip(images, responses):
        if response.status_code == 429:
            assert response.json()["type"] == "too_many_explanations"
            assert response.headers["Retry-After"] == str(TooManyExplanations.retry_after_s)
        elif "attributions" in response.json():
            assert_complete(response.json(), logit_gap(image, response.json()["target"]))
