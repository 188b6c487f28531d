"""POST /explanations/mnist on a real TorchServe: Integrated Gradients maps over the 32x32 input
the model saw, checked against the trained model in-process (completeness: a map adds up to how
far its score moved from its baseline's: the target's logit from the blank page's, or the gap
between the target's and the contrasted digit's logits from that digit's training average's)."""
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
from training.digit_means import digit_means
from training.user_styles import large_off_centre, mnist_png, photo_jpeg

MAX_PER_BATCH = handler_settings()["explain_max_per_batch"]


@pytest.fixture(scope="module")
def logit_gap(trained_model, mnist_root):
    """What a complete map sums to, in-process: logit_target(digit) - logit_target(blank page), or,
    against `versus`, the gap between the two logits on the digit minus that on the average
    `versus` of the training set."""
    means = digit_means(mnist_root)
    return lambda image, target, versus=None: harness_logit_gap(trained_model, image, target, versus, means)


def explain(server, image: np.ndarray, target: int | None = None, **fields):
    if target is None and not fields:
        return server.predict(mnist_png(image), endpoint="explanations")
    body = {"data": base64.b64encode(mnist_png(image)).decode(), **fields}
    if target is not None:
        body["target"] = target
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


def test_a_digit_against_another_is_the_gap_of_their_logits(server, test_set, logit_gap, mnist_root):
    """"Why 7 and not 8?": the map of logit 7 - logit 8 from the average 8 adds up to how far that
    gap moved from the average 8's; and, unlike a map from the blank page, it colours empty paper
    too, most where an 8 has ink and this 7 has none: there the missing ink pushes toward 7."""
    image = test_set[0][0]                     # a 7
    versus_8 = requests.post(f"{server.inference}/explanations/mnist", data={"versus": "8"},
                             files={"file": ("d.png", mnist_png(image), "image/png")},
                             headers={"Authorization": f"Bearer {server.key()}"}, timeout=30).json()
    eight_versus = explain(server, image, target=8, versus=7).json()
    plain = explain(server, image).json()
    assert (versus_8["digit"], versus_8["target"], versus_8["versus"]) == (7, 7, 8)
    assert (eight_versus["target"], eight_versus["versus"]) == (8, 7) and "versus" not in plain
    assert_complete(versus_8, logit_gap(image, 7, 8))
    assert_complete(eight_versus, logit_gap(image, 8, 7))
    paper = np.array(versus_8["normalized_digit"]) == 0
    missing = paper & (digit_means(mnist_root)[8] >= 128)     # where an average 8 has ink and this 7 none
    contrast, alone = (np.array(answer["attributions"])[2:-2, 2:-2] for answer in (versus_8, plain))
    assert missing.sum() >= 20 and contrast[missing].sum() > 0.2 * contrast.sum() > 0
    assert not alone[paper].any()                               # from a blank page, paper scores zero


def test_a_digit_against_the_answer_itself_is_explained_alone(server, test_set):
    """versus equal to the predicted digit would score zero everywhere: the digit is explained
    alone, and the answer says so by carrying no "versus"."""
    answer = explain(server, test_set[0][0], versus=7).json()
    assert answer["target"] == 7 and "versus" not in answer
    np.testing.assert_allclose(answer["attributions"], explain(server, test_set[0][0]).json()["attributions"])


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


@pytest.mark.parametrize("fields", [{"versus": 10}, {"versus": "eight"}, {"target": 3, "versus": 3}])
def test_a_versus_that_is_no_other_digit_is_refused(server, test_set, fields):
    response = explain(server, test_set[0][0], **fields)
    assert response.status_code == 400
    error = response.json()
    assert (error["code"], error["type"]) == (400, "invalid_request") and "versus" in error["message"]


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
