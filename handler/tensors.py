"""Digits sent as numbers (a KServe v2 tensor input, a KServe v1 list instance) instead of image files.

A 28x28 tensor is an MNIST-format digit (0-255, white ink on black, as MNIST's own files hold
it): it is an image, and takes the path of every image (`normalize_digit` then
`to_model_input`), so it gets exactly the answer the same pixels sent as a PNG get. A 32x32
tensor is taken as the model input as-is: what `to_model_input` returns, for clients (a KServe
transformer) that preprocess themselves, and the grid every explanation is drawn on. Leading
axes of length 1 (1x28x28, 1x32x32, 1x1x32x32) are accepted; one input or instance is one digit.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from model.errors import InvalidRequest
from model.preprocess import INPUT_SIZE, MNIST_SIZE, to_model_input

# What to_model_input makes of paper (0) and full ink (255), float32 rounding allowed.
LOWEST, HIGHEST = (float(v) for v in to_model_input(torch.tensor([[[0, 255]]], dtype=torch.uint8)).aminmax())
ROUNDING = 1e-4


def is_tensor(row) -> bool:
    """A v1 instance that is a list, or a v2 input of numbers (BYTES inputs carry images)."""
    return isinstance(row, list) or (isinstance(row, dict) and row.get("datatype", "BYTES") != "BYTES")


def tensor_content(row) -> Image.Image | torch.Tensor:
    """A tensor row as the image of a digit (28x28) or as the (1, 32, 32) model input itself."""
    try:
        pixels = np.asarray(row if isinstance(row, list) else row.get("data"), dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidRequest("a tensor input must be a 28x28 or 32x32 array of numbers") from None
    if pixels.ndim < 2 or any(n != 1 for n in pixels.shape[:-2]) or pixels.shape[-2:] not in (
            (MNIST_SIZE, MNIST_SIZE), (INPUT_SIZE, INPUT_SIZE)):
        raise InvalidRequest(f"a tensor input must have shape 28x28 (an MNIST-format digit, 0-255) or 32x32 "
                             f"(the model input as to_model_input makes it), not {'x'.join(map(str, pixels.shape))}")
    pixels = pixels.reshape(pixels.shape[-2:])
    if not np.isfinite(pixels).all():
        raise InvalidRequest("a tensor input must hold finite numbers")
    if pixels.shape == (INPUT_SIZE, INPUT_SIZE):
        if pixels.min() < LOWEST - ROUNDING or pixels.max() > HIGHEST + ROUNDING:
            raise InvalidRequest(f"a 32x32 input holds standardized pixels as to_model_input makes them, "
                                 f"{LOWEST:.4f} (paper) to {HIGHEST:.4f} (ink)")
        return torch.from_numpy(pixels.astype(np.float32))[None]
    if pixels.min() < 0 or pixels.max() > 255:
        raise InvalidRequest("a 28x28 digit holds MNIST's pixel values, 0 (background) to 255 (ink)")
    return Image.fromarray(np.rint(pixels).astype(np.uint8))
