"""Property-based fuzzing of the per-request path the handler runs on every input:
payload -> decode -> normalize. Whatever arrives, the outcome is a 28x28 uint8 digit or an
ImageRejected (a 4xx for the client), never any other exception."""
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from handler.payload import image_bytes
from model.preprocess import ImageRejected, decode_image, normalize_digit

MAX_PIXELS = 25_000_000
FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]
MODES = ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")   # Pillow's notes on corrupt files
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(row: dict) -> str:
    """What the handler would answer for this request row: 'digit' or the rejection reason."""
    try:
        digit = normalize_digit(decode_image(image_bytes(row), MAX_PIXELS))
    except ImageRejected as rejected:
        return rejected.reason
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    return "digit"


@st.composite
def images(draw) -> bytes:
    """A small random image in a random mode and format."""
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    pixels = np.frombuffer(draw(st.binary(min_size=width * height, max_size=width * height)), np.uint8)
    img = Image.fromarray(pixels.reshape(height, width))
    mode = draw(st.sampled_from(MODES))
    img = Image.fromarray(pixels.reshape(height, width).astype(np.uint16) * 257) if mode == "I;16" else img.convert(mode)
    fmt = draw(st.sampled_from(["PNG", "TIFF"] if mode == "I;16" else FORMATS))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        img = img.convert("RGB")
    buffer = io.BytesIO()
    try:
        img.save(buffer, fmt)
    except OSError:   # this format cannot hold this mode
        buffer = io.BytesIO()
        img.save(buffer, "PNG")
    return buffer.getvalue()


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    outcome({"body": data})


@FUZZ
@given(images())
def test_valid_images_of_every_mode_and_format(data):
    assert outcome({"body": data}) in ("digit", "no_digit_found")


@FUZZ
@given(images(), st.data())
def test_truncated_and_bit_flipped_images(data, choices):
    cut = choices.draw(st.integers(0, len(data)))
    flips = choices.draw(st.lists(st.integers(0, len(data) * 8 - 1), max_size=8))
    damaged = bytearray(data[:cut] if choices.draw(st.booleans()) else data)
    for bit in flips:
        if bit // 8 < len(damaged):
            damaged[bit // 8] ^= 1 << (bit % 8)
    outcome({"body": bytes(damaged)})


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8))
def test_json_of_any_shape(value):
    """TorchServe hands a parsed JSON body to the handler as it is."""
    outcome({"body": value})
    outcome({"body": {"data": value}})


def test_huge_declared_dimensions_are_refused_before_decoding():
    header = io.BytesIO()
    Image.new("1", (40_000, 40_000)).save(header, "PNG")     # 1.6 Gpx in a small file
    assert outcome({"body": header.getvalue()}) == "image_too_large"


def test_animated_gif_uses_its_first_frame(test_set):
    frames = [Image.fromarray(test_set[0][i]) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    first = normalize_digit(decode_image(buffer.getvalue(), MAX_PIXELS))
    assert np.abs(first.astype(int) - normalize_digit(frames[0]).astype(int)).mean() < 2


def test_wrong_base64_and_json_shapes_are_invalid_requests():
    assert outcome({"body": {"data": "%%%"}}) == "invalid_request"
    assert outcome({"body": json.loads("[1, 2]")}) == "invalid_request"
    assert outcome({"body": "not base64!"}) == "invalid_request"
    assert outcome({"data": b"x", "file": b"y"}) == "invalid_request"
