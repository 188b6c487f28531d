"""Hostile inputs, shared by the fuzz, abuse and soak runs.

The strategies generate what an attacker or a broken client sends: random bytes, images of
every mode and format, the same truncated and bit-flipped, animated, alpha-only, zero-size or
with huge declared dimensions, wrong base64 and JSON of any shape. Each is a `Request` as it
travels over HTTP (body and content type), so the same inputs drive the in-process fuzz and
the real server; the fuzz tests send them through TorchServe's worker code in-process
(harness/worker.py).
"""
import base64
import json
import struct
import zlib

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from model.errors import HTTP_STATUS, ForHeavyLane
from harness.worker import Request
from training.user_styles import encode

FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]
MODES = ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"]
# A digit or one of the handler's 4xx errors, never anything else (nor a handover to the heavy
# lane: these requests carry no fast-lane marker).
ANSWERS = {200} | {status for reason, status in HTTP_STATUS.items() if status < 500 and reason != ForHeavyLane.reason}


def png(width: int, height: int, color_type: int = 0, bit_depth: int = 8, idat: bytes = b"") -> bytes:
    """A PNG whose header declares any size (zero or 2**31 - 1 included) over whatever IDAT data."""
    def chunk(name: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zlib_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of zeros: about 1,000 times smaller than its decoded pixels."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)   # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png(width, height, idat=idat)


@st.composite
def images(draw) -> bytes:
    """A small random image in a random mode (16-bit and palette included) and format."""
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    pixels = np.frombuffer(draw(st.binary(min_size=width * height, max_size=width * height)), np.uint8)
    pixels = pixels.reshape(height, width)
    mode = draw(st.sampled_from(MODES))
    img = Image.fromarray(pixels.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(pixels).convert(mode)
    fmt = draw(st.sampled_from(["PNG", "TIFF"] if mode == "I;16" else FORMATS))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        img = img.convert("RGB")
    try:
        return encode(img, fmt)
    except OSError:   # this format cannot hold this mode
        return encode(img, "PNG")


@st.composite
def damaged(draw) -> bytes:
    """An image truncated anywhere and/or with up to 8 bits flipped."""
    data = draw(images())
    cut = draw(st.integers(0, len(data)))
    flips = draw(st.lists(st.integers(0, len(data) * 8 - 1), max_size=8))
    damaged = bytearray(data[:cut] if draw(st.booleans()) else data)
    for bit in flips:
        if bit // 8 < len(damaged):
            damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


@st.composite
def animations(draw) -> bytes:
    """An animated GIF or WebP of 2-4 random frames."""
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    frames = [Image.frombytes("L", size, draw(st.binary(min_size=size[0] * size[1], max_size=size[0] * size[1])))
              for _ in range(draw(st.integers(2, 4)))]
    return encode(frames[0], draw(st.sampled_from(["GIF", "WEBP"])), save_all=True, append_images=frames[1:])


@st.composite
def alpha_only(draw) -> bytes:
    """All the information in the alpha channel: a uniform colour under random transparency."""
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    alpha = Image.frombytes("L", size, draw(st.binary(min_size=size[0] * size[1], max_size=size[0] * size[1])))
    img = Image.new("LA" if draw(st.booleans()) else "RGBA", size, 0)
    img.putalpha(alpha)
    return encode(img, draw(st.sampled_from(["PNG", "WEBP", "TIFF"])))


@st.composite
def declared_sizes(draw) -> bytes:
    """A PNG header declaring any size, from zero to 2**31 - 1 per side, over random data."""
    side = st.one_of(st.just(0), st.integers(1, 2**31 - 1), st.integers(4000, 60_000))
    return png(draw(side), draw(side), draw(st.sampled_from([0, 2, 3, 4, 6])), 8, draw(st.binary(max_size=64)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


def as_json(value) -> Request:
    return Request("json", json.dumps(value).encode(), "application/json")


@st.composite
def base64_payloads(draw) -> Request:
    """JSON {"data": ...} holding broken base64, base64 of garbage, or a data: URL of either."""
    encoded = base64.b64encode(draw(st.binary(max_size=200))).decode()
    text = draw(st.one_of(st.text(max_size=40), st.just(encoded), st.just(encoded[:-1]),
                          st.text(max_size=20).map("data:image/png;base64,".__add__)))
    return Request("base64", json.dumps({"data": text}).encode(), "application/json")


def hostile_requests():
    """Every kind of hostile input, as the request that carries it."""
    raw = {"random bytes": st.binary(max_size=2000), "image": images(), "damaged image": damaged(),
           "animation": animations(), "alpha only": alpha_only(), "declared size": declared_sizes()}
    content_types = st.sampled_from(["application/octet-stream", "image/png", "image/jpeg"])
    return st.one_of(
        *(st.builds(Request, st.just(kind), body, content_types) for kind, body in raw.items()),
        JSON_VALUES.map(as_json), JSON_VALUES.map(lambda value: as_json({"data": value})), base64_payloads())


def sample(strategy, count: int) -> list:
    """`count` examples of `strategy`, the same ones on every run (no example database)."""
    found = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate], deadline=None)
    @given(strategy)
    def collect(value):
        found.append(value)
    collect()
    return found
