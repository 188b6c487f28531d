"""Evaluation sets the preprocessing and the training recipe were never tuned on.

`training/user_styles.py` is the development set: MNIST digits redrawn by the generator the
normalizer was developed against. These sets come from elsewhere, so that their scores say
how the served model does on inputs nobody fitted it to:

- `other_writers`: scikit-learn's bundled 8x8 digits (UCI optdigits: other writers, other
  scanner), sent at 8, 12, 16, 32 or 64 px, dark on white, enlarged with blur: low
  resolution and frame-filling, the strokes touching the image's edges.
- `second_camera`: MNIST test digits written on paper and photographed by a model of a
  camera written separately from `user_styles.photo_jpeg`: perspective, paper fibre and
  tint, coloured ink, vignetting, defocus, shot noise, chroma-subsampled JPEG.
- `printed` (held out: looked at once, at the end): digits typeset in the fonts
  matplotlib ships, cropped tightly or with a margin, some enlarged from low resolution.
- `not_digits`: images holding no single digit (letters that no digit resembles, numbers
  of two digits, scribbles, photos of an empty desk): these must be refused or answered
  with low confidence.

Every set is a list of (encoded image bytes, label) pairs, label None for `not_digits`;
each is generated from a fixed seed, so a set is the same on every machine.
"""
import io
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from training.data import load_raw

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf",
         "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf")
# Letters no digit looks like, so a confident digit for them is a mistake (O, I, l, S, Z, B,
# b, g, q, G, T are left out: handwritten, they are the digits 0, 1, 5, 2, 8, 6, 9, 9, 6, 7).
LETTERS = "ACEFHJKLMNPRUVWXYacdefhkmnprtuvwxy"


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(img: Image.Image, quality: int, subsampling: int = 2) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def other_writers(count: int = 1797, seed: int = 11) -> list:
    """scikit-learn's 8x8 digits (0-16 ink), dark on white, at a random size from 8 to 64 px."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    out = []
    for image, label in list(zip(digits.images, digits.target))[:count]:
        page = Image.fromarray(np.rint(255 - image * (255 / 16)).astype(np.uint8))
        size = int(rng.choice([8, 12, 16, 32, 64]))
        if size != 8:
            page = page.resize((size, size), Image.BILINEAR if rng.random() < 0.5 else Image.BICUBIC)
        out.append((_png(page), int(label)))
    return out


def _perspective(size: tuple, rng: np.random.Generator, strength: float) -> list:
    """Coefficients of a random perspective warp for Image.transform (output -> input)."""
    w, h = size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    moved = corners + rng.uniform(-strength, strength, (4, 2)) * [w, h]
    rows = []
    for (x, y), (u, v) in zip(corners, moved):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows), moved.ravel()).tolist()


def _fibre(shape: tuple, rng: np.random.Generator, scale: int) -> np.ndarray:
    """Low-frequency paper texture in [-1, 1]: coarse noise enlarged smoothly."""
    coarse = rng.uniform(-1, 1, (max(2, shape[0] // scale), max(2, shape[1] // scale)))
    return np.asarray(Image.fromarray(coarse.astype(np.float32), "F").resize(shape[::-1], Image.BICUBIC))


def photograph(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    """A camera's JPEG of a sheet carrying `ink` (float, 1 = full ink), drawn at any size."""
    h, w = ink.shape
    sheet = np.full((h, w, 3), rng.uniform(200, 250), np.float32)
    sheet *= np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.80, 1.0)], np.float32)  # cream to white
    sheet *= (1 + 0.04 * _fibre((h, w), rng, 6))[..., None]
    pen = np.array(rng.choice([[25, 25, 30], [20, 35, 120], [30, 30, 90], [110, 25, 30], [40, 60, 40]]),
                   np.float32) + rng.uniform(-10, 10, 3)
    img = sheet * (1 - ink[..., None]) + pen * ink[..., None]
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    radius = np.hypot(yy - cy, xx - cx) / np.hypot(h, w)
    img *= (1 - rng.uniform(0.1, 0.45) * radius ** 2)[..., None]                    # vignetting
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    photo = photo.transform(photo.size, Image.PERSPECTIVE, _perspective(photo.size, rng, 0.06),
                            Image.BICUBIC, fillcolor=tuple(int(v) for v in sheet[0, 0]))
    out_w = int(rng.choice([160, 240, 320, 480]))
    photo = photo.resize((out_w, round(out_w * h / w)), Image.LANCZOS)
    photo = photo.filter(ImageFilter.BoxBlur(rng.uniform(0.3, 1.2)))                 # defocus
    pixels = np.asarray(photo, np.float32)
    pixels = rng.poisson(pixels * 0.5) / 0.5 + rng.normal(0, 1.5, pixels.shape)       # shot + read noise
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return _jpeg(photo, quality=int(rng.integers(45, 95)))


def second_camera(root, count: int = 2000, start: int = 5000, seed: int = 12) -> list:
    """MNIST test digits (from `start` on) placed anywhere on a sheet, then photographed."""
    images, labels = load_raw(root, train=False)
    rng = np.random.default_rng(seed)
    out = []
    for image, label in zip(images[start:start + count].numpy(), labels[start:start + count].tolist()):
        size = int(rng.integers(60, 200))
        glyph = Image.fromarray(image).resize((size, size), Image.BICUBIC)
        sheet_w, sheet_h = int(size * rng.uniform(1.3, 3.0)), int(size * rng.uniform(1.2, 2.4))
        ink = np.zeros((sheet_h, sheet_w), np.float32)
        top, left = int(rng.integers(0, sheet_h - size + 1)), int(rng.integers(0, sheet_w - size + 1))
        ink[top:top + size, left:left + size] = np.asarray(glyph, np.float32) / 255
        out.append((photograph(ink * rng.uniform(0.75, 1.0), rng), label))
    return out


def _typeset(text: str, font_file: str, size: int) -> np.ndarray:
    """Ink map (float, 1 = ink) of `text` in a font, cropped to its ink."""
    font = ImageFont.truetype(str(FONT_DIR / font_file), size)
    canvas = Image.new("L", (size * (len(text) + 2), size * 3), 0)
    ImageDraw.Draw(canvas).text((size, size // 2), text, fill=255, font=font)
    ink = np.asarray(canvas, np.float32) / 255
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _on_paper(ink: np.ndarray, margin: float, rng: np.random.Generator) -> Image.Image:
    """Dark ink on white paper with `margin` (times the ink's size) of paper around it."""
    h, w = ink.shape
    pad_y, pad_x = int(h * margin * rng.uniform(0.5, 1.5)), int(w * margin * rng.uniform(0.5, 1.5))
    page = np.zeros((h + 2 * pad_y, w + 2 * pad_x), np.float32)
    page[pad_y:pad_y + h, pad_x:pad_x + w] = ink
    return Image.fromarray(np.rint(255 * (1 - page)).astype(np.uint8))


def printed(count: int = 1000, seed: int = 13) -> list:
    """Digits in the fonts matplotlib ships: tight crops, with margins, or low resolution enlarged."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        label = i % 10
        ink = _typeset(str(label), FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(24, 96)))
        page = _on_paper(ink, float(rng.choice([0.0, 0.0, 0.2, 0.8])), rng)
        if rng.random() < 0.3:   # scanned small, then enlarged
            small = int(rng.integers(8, 17))
            page = page.resize((max(1, round(small * page.width / page.height)), small), Image.BOX)
            page = page.resize((page.width * 4, page.height * 4), Image.BICUBIC)
        out.append((_png(page), label))
    return out


def _scribble(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """A random pen path of a few smooth turns: ink that is no digit."""
    page = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(page)
    points = rng.uniform(0.15, 0.85, (int(rng.integers(8, 20)), 2)) * size
    draw.line([tuple(p) for p in points], fill=0, width=int(rng.integers(2, 6)), joint="curve")
    return page


def _empty_desk(rng: np.random.Generator) -> Image.Image:
    """A photo of wood grain (a desk) with uneven light and nothing written on it."""
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = np.sin((x + 25 * _fibre((h, w), rng, 40)) * rng.uniform(0.05, 0.2)) * rng.uniform(5, 20)
    base = rng.uniform(90, 180) + grain + 10 * _fibre((h, w), rng, 8)
    light = 1 + rng.uniform(-0.3, 0.3) * (x / w - 0.5) + rng.uniform(-0.3, 0.3) * (y / h - 0.5)
    rgb = (base * light)[..., None] * np.array([1.0, 0.75, 0.5], np.float32) + rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


NOT_DIGIT_KINDS = ("letter", "two_digits", "scribble", "empty_desk")


def not_digits(root, count: int = 400, seed: int = 14) -> list:
    """(image file, kind): letters, two-digit numbers, scribbles and empty desks, a quarter each."""
    images, _ = load_raw(root, train=False)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            letter = LETTERS[int(rng.integers(len(LETTERS)))]
            ink = _typeset(letter, FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(32, 96)))
            data = _png(_on_paper(ink, 0.3, rng))
        elif kind == 1:
            a, b = images[rng.integers(len(images), size=2)].numpy()
            pair = np.concatenate([a[:, 4:24], b[:, 4:24]], axis=1)      # two digits side by side
            data = _png(Image.fromarray(255 - pair).resize((160, 112), Image.BICUBIC))
        elif kind == 2:
            data = _png(_scribble(rng))
        else:
            data = _jpeg(_empty_desk(rng), quality=85)
        out.append((data, NOT_DIGIT_KINDS[kind]))
    return out


SETS = {"other_writers": lambda root: other_writers(), "second_camera": second_camera}
HELD_OUT = {"printed": lambda root: printed()}
NOT_DIGITS = {"not_digits": not_digits}
