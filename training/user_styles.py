"""MNIST test digits re-drawn the way users send them, as encoded image files.

Each style takes a 28x28 uint8 MNIST digit (white on black) and a numpy Generator and
returns the bytes of an image file.
"""
import io

import numpy as np
from PIL import Image, ImageFilter


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def mnist_png(digit: np.ndarray, rng=None) -> bytes:
    """The digit exactly as MNIST stores it."""
    return encode(Image.fromarray(digit))


def dark_on_white(digit: np.ndarray, rng=None) -> bytes:
    """Black ink on white paper, as a scan or a drawing app exports it."""
    return encode(Image.fromarray(255 - digit))


def transparent_canvas(digit: np.ndarray, rng=None) -> bytes:
    """Dark ink on a transparent canvas (RGBA), enlarged, as a web drawing pad exports it."""
    alpha = Image.fromarray(digit).resize((140, 140), Image.BICUBIC)
    ink = Image.new("RGB", alpha.size, (20, 20, 60))
    ink.putalpha(alpha)
    return encode(ink)


def large_off_centre(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Enlarged 3-6x and placed off-centre on a bigger white RGB page."""
    size = int(28 * rng.uniform(3, 6))
    glyph = Image.fromarray(255 - digit).resize((size, size), Image.BICUBIC)
    page = Image.new("L", (size * 2, int(size * 1.6)), 255)
    page.paste(glyph, (int(rng.integers(0, size)), int(rng.integers(0, int(size * 0.6)))))
    return encode(page.convert("RGB"))


def photo_jpeg(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo of ink on paper: rotation, blur, uneven light, sensor noise, JPEG."""
    size = 112
    ink = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
    ink = ink.rotate(rng.uniform(-8, 8), Image.BILINEAR)
    ink = np.asarray(ink.filter(ImageFilter.GaussianBlur(1.2)), np.float32) / 255
    paper, pen = rng.uniform(170, 230), rng.uniform(20, 70)
    y, x = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.15, 0.35) * ((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle))
    grey = (paper * (1 - ink) + pen * ink) * light + rng.normal(0, 6, (size, size))
    tint = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 0.95)], np.float32)
    rgb = np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(rgb), "JPEG", quality=int(rng.integers(60, 90)))


STYLES = {"mnist_png": mnist_png, "dark_on_white": dark_on_white, "transparent_canvas": transparent_canvas,
          "large_off_centre": large_off_centre, "photo_jpeg": photo_jpeg}
