"""The model's input contract: how any image becomes the tensor LeNet-5 was trained on.

This one module runs in training, in evaluation, in the TorchServe handler inside the
`.mar` and in the tests, so the pixels the model sees at serving time are made by the
same code as the pixels it learned from.

The path has two steps:

1. `normalize_digit` turns an arbitrary image (any mode, size, polarity, transparency,
   lighting) into an MNIST-format digit: 28x28 uint8, white ink on black, the ink scaled
   into a 20x20 box keeping its aspect ratio and centred by its centre of mass.
   The training set itself is passed through it, and on a genuine MNIST digit it is
   (nearly always exactly) the identity, because MNIST was made the same way.
2. `to_model_input` pads the 28x28 digits to 32x32 (as LeCun et al. did; resizing would
   blur the strokes) and standardizes them.
"""
import functools
import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

MNIST_SIZE = 28
DIGIT_BOX = 20            # MNIST scales every digit into a 20x20 box ...
CENTRE_OF_MASS = 14.0     # ... and puts its centre of mass here (measured: 13.99, 14.01)
INPUT_SIZE = 32           # LeNet-5's input; the 28x28 digit is padded by 2 on each side
# Mean and std of the 60,000 normalized training digits after padding to 32x32
# (tests/test_preprocess.py recomputes them from the data).
MEAN = 0.1000
STD = 0.2752

WORK_SIZE = 256           # larger images are reduced to this longest side first
NOISE_SIGMAS = 4.0        # ink must stand this many noise sigmas above the paper
MIN_CONTRAST = 0.1        # below this the image holds no digit


class ImageRejected(ValueError):
    """An input that cannot become a digit. `reason` names the class of mistake."""

    reason = "invalid_image"


class NotAnImage(ImageRejected):
    reason = "not_an_image"


class ImageTooLarge(ImageRejected):
    reason = "image_too_large"


class BlankImage(ImageRejected):
    reason = "no_digit_found"


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes in any format Pillow reads, refusing oversized images before decoding."""
    if not data:
        raise NotAnImage("the request body is empty: send the image file as the body")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own, far higher limit
        raise ImageTooLarge(f"{exc}: send a smaller image") from None
    except Exception as exc:  # Pillow raises many types for garbage input
        raise NotAnImage(f"the body is not an image Pillow can decode ({exc.__class__.__name__})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} = {width * height} pixels; "
                            f"the limit is {max_pixels}: send a smaller image")
    if width == 0 or height == 0:
        raise NotAnImage("the image has no pixels")
    if img.format == "JPEG":  # decode at reduced scale: much faster for photos
        img.draft("L", (WORK_SIZE, WORK_SIZE))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except Exception as exc:
        raise NotAnImage(f"the image data is corrupt or truncated ({exc.__class__.__name__})") from None
    return ImageOps.exif_transpose(img)  # phone photos: upright as the camera app shows them


def normalize_digit(img: Image.Image) -> np.ndarray:
    """Any image of one digit -> a 28x28 uint8 MNIST-format digit (white on black).

    Raises BlankImage when no ink stands out from the paper.
    """
    ink = _ink(img)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    patch = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    height, width = patch.shape
    scale = DIGIT_BOX / max(height, width)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        patch = np.asarray(Image.fromarray(patch, "F").resize(size, Image.BILINEAR))
        patch = np.clip(patch, 0.0, 1.0)

    digit = np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    mass = patch.sum()
    cy = (patch.sum(axis=1) @ np.arange(patch.shape[0])) / mass
    cx = (patch.sum(axis=0) @ np.arange(patch.shape[1])) / mass
    top, left = round(CENTRE_OF_MASS - cy), round(CENTRE_OF_MASS - cx)
    _paste(digit, patch, top, left)
    return np.rint(digit * 255).astype(np.uint8)


def to_model_input(digits: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, 28, 28) -> standardized float input (N, 1, 32, 32)."""
    pad = (INPUT_SIZE - MNIST_SIZE) // 2
    x = digits.unsqueeze(1).float().div_(255)
    x = F.pad(x, (pad, pad, pad, pad))
    return x.sub_(MEAN).div_(STD)


def _ink(img: Image.Image) -> np.ndarray:
    """Float map in [0, 1] of how much ink each pixel holds, with the paper exactly 0."""
    img = _resamplable(img)
    if max(img.size) > WORK_SIZE:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.BOX)
    g = _grey(img)
    g = g - _background(g)
    median, sigma = _noise(g)
    floor = median + NOISE_SIGMAS * sigma
    peak = g.max()
    if peak - floor < MIN_CONTRAST:
        raise BlankImage("no digit found: the image is blank or has too little contrast; "
                         "send a photo or scan of one handwritten digit")
    return np.clip((g - floor) / (peak - floor), 0.0, 1.0)


def _resamplable(img: Image.Image) -> Image.Image:
    """A copy in one of the modes Pillow can resample (L, LA, RGB, RGBA, I, F), transparency kept."""
    if img.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return img.copy()
    try:
        if img.mode.startswith("I;16"):
            return img.convert("I")
        if img.mode in ("P", "PA") or "A" in img.getbands() or "transparency" in img.info:
            return img.convert("RGBA")
        return img.convert("RGB" if len(img.getbands()) >= 3 else "L")
    except (ValueError, OSError):
        raise NotAnImage(f"images in pixel mode {img.mode} are not supported: send PNG or JPEG") from None


def _grey(img: Image.Image) -> np.ndarray:
    """Float map in [0, 1] where ink is bright, whatever the mode, polarity or transparency."""
    if "A" in img.getbands():
        grey, alpha = (np.asarray(band, np.float32) / 255 for band in img.convert("LA").split())
        if alpha.min() < alpha.max():
            # Drawn on a transparent canvas: lay it on paper that contrasts with the ink.
            opaque = grey[alpha > 0.5]
            paper = 1.0 if opaque.size and _median(opaque) < 0.5 else 0.0
            g = grey * alpha + paper * (1.0 - alpha)
        else:
            g = grey
    elif img.mode in ("I", "F"):
        g = np.asarray(img, np.float32)
        lo, hi = float(g.min()), float(g.max())
        g = (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)
    else:
        g = np.asarray(img.convert("L"), np.float32) / 255
    # The paper is the majority of the pixels; the ink is the extreme farther from it.
    paper = _median(g)
    if paper - g.min() > g.max() - paper:
        g = 1.0 - g
    return g


def _background(g: np.ndarray) -> np.ndarray | float:
    """Smooth estimate of the paper level (uneven lighting, vignetting).

    A quadratic surface fitted to the paper pixels, twice: first to the darker half of the
    image, then to every pixel the first fit calls paper. Flat paper (a clean scan, a
    drawing app, MNIST itself) needs no surface: its level is returned as it is.
    """
    values = g.ravel()
    paper_level = _median(values)
    paper = values <= paper_level
    if values[paper].min() == paper_level:
        return paper_level
    basis = _quadratic_basis(*g.shape)
    for _ in range(2):
        coef = np.linalg.lstsq(basis[paper], values[paper], rcond=None)[0]  # copes with few or collinear pixels
        residual = values - basis @ coef
        median, sigma = _noise(residual[paper])
        paper = residual <= median + NOISE_SIGMAS * sigma
    return (basis @ coef).reshape(g.shape).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _quadratic_basis(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:1:complex(0, h), 0:1:complex(0, w)]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)


def _median(a: np.ndarray) -> float:
    """Upper median: np.median's overhead dominates on images this small."""
    flat = a.ravel()
    k = flat.size // 2
    return float(np.partition(flat, k)[k])


def _noise(a: np.ndarray) -> tuple[float, float]:
    """Median and noise sigma robust to the ink (median absolute deviation, Gaussian-scaled)."""
    median = _median(a)
    return median, 1.4826 * _median(np.abs(a - median))


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Copy patch into canvas at (top, left), clipping whatever falls outside."""
    h, w = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    canvas[y0:y1, x0:x1] = patch[y0 - top:y1 - top, x0 - left:x1 - left]
