"""Property-based fuzzing of the path every request takes, through the handler itself.

Every input runs through TorchServe's own worker code and our handler, in-process
(`harness/worker.py`): whatever arrives, the answer is a digit (200) or one of the handler's
JSON 4xx errors, never a 500 (an exception the handler caught) nor a failed batch (one that
escaped it), and a hostile request never changes the answer of a digit in its batch.

`make fuzz` runs the same properties with more examples (FUZZ_EXAMPLES) and prints
hypothesis' statistics, which count the inputs tried.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from configuration import handler_settings, model_config
from harness.hostile import (ANSWERS, JSON_VALUES, alpha_only, animations, as_json, base64_payloads, damaged,
                           declared_sizes, hostile_requests, images, png, zlib_bomb)
from harness.worker import Request
from model.errors import HTTP_STATUS
from model.preprocess import decode_image, normalize_digit
from training.user_styles import encode, mnist_png

MAX_PIXELS = handler_settings()["max_pixels"]
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),      # Pillow's notes on corrupt files ...
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]  # ... and huge ones
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def kind(answer) -> str:
    """'digit' or the error type of a well-formed answer; anything else fails the test."""
    assert answer.status in ANSWERS, answer
    body = answer.json()
    if answer.status == 200:
        assert body["digit"] in range(10) and abs(sum(body["probabilities"]) - 1) < 1e-4
        return "digit"
    assert body["code"] == answer.status == HTTP_STATUS[body["type"]] and body["message"]
    return body["type"]


def body(worker, data: bytes) -> str:
    return kind(worker.answer(Request("raw", data)))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(worker, data):
    body(worker, data)


@FUZZ
@given(st.one_of(images(), animations(), alpha_only()))
def test_valid_images_of_every_mode_and_format_animated_and_alpha_only(worker, data):
    assert body(worker, data) in ("digit", "no_digit_found")


@FUZZ
@given(damaged())
def test_truncated_and_bit_flipped_images(worker, data):
    body(worker, data)


@FUZZ
@given(declared_sizes())
def test_declared_sizes_over_the_cap_are_refused_whatever_follows(worker, data):
    width, height = np.frombuffer(data[16:24], ">u4")
    outcome = body(worker, data)
    assert outcome == "image_too_large" if int(width) * int(height) > MAX_PIXELS else outcome != "image_too_large"


@FUZZ
@given(JSON_VALUES)
def test_json_of_any_shape(worker, value):
    """TorchServe parses a JSON body and hands the handler whatever it holds."""
    kind(worker.answer(as_json(value)))
    kind(worker.answer(as_json({"data": value})))


@FUZZ
@given(base64_payloads())
def test_wrong_base64(worker, payload):
    kind(worker.answer(payload))


@pytest.fixture(scope="module")
def digits(test_set, in_process) -> list[tuple[bytes, int]]:
    images = test_set[0][:100]
    return list(zip([mnist_png(a) for a in images], in_process(images).argmax(axis=1).tolist()))


@FUZZ
@given(st.lists(hostile_requests(), max_size=model_config()["batchSize"] - 1), st.data())
def test_hostile_requests_do_not_disturb_a_digit_in_their_batch(worker, digits, hostile, choices):
    png_bytes, expected = choices.draw(st.sampled_from(digits))
    position = choices.draw(st.integers(0, len(hostile)))
    batch = [[("body", r.content_type, r.body)] for r in hostile]
    batch.insert(position, [("body", "image/png", png_bytes)])
    answers = worker.predict(batch)
    assert [kind(a) for a in answers][position] == "digit"
    assert answers[position].json()["digit"] == expected


def test_huge_zero_and_bomb_dimensions(worker):
    assert body(worker, png(40_000, 40_000, bit_depth=1)) == "image_too_large"   # 1.6 Gpx in 57 bytes
    assert body(worker, zlib_bomb(6000, 5000)) == "image_too_large"              # 30 Mpx of real zeros
    assert body(worker, png(0, 28)) == "not_an_image"


def test_animated_gif_uses_its_first_frame(test_set):
    frames = [Image.fromarray(test_set[0][i]) for i in range(3)]
    first = normalize_digit(decode_image(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), MAX_PIXELS))
    assert np.abs(first.astype(int) - normalize_digit(frames[0]).astype(int)).mean() < 2


def test_a_target_that_is_not_text_is_an_invalid_request(worker, digits):
    form = [("file", "image/png", digits[0][0]), ("target", "application/octet-stream", b"\xff\xfe")]
    assert kind(worker.predict([form], [{"explain": "True"}])[0]) == "invalid_request"


def test_wrong_base64_and_json_shapes_are_invalid_requests(worker):
    for payload in (as_json({"data": "%%%"}), as_json([1, 2]), as_json("not base64!")):
        assert kind(worker.answer(payload)) == "invalid_request", payload
    two_files = worker.predict([[("data", "image/png", b"x"), ("file", "image/png", b"y")]])[0]
    assert kind(two_files) == "invalid_request"
    for data_url_without_comma in (as_json("data:"), as_json({"data": "data:"})):   # found by `make fuzz`
        kind(worker.answer(data_url_without_comma))
