"""Batched, on-the-fly augmentation for standardized digit tensors (N, 1, H, W).

Everything is one `grid_sample` per batch: a random affine map (rotation, zoom, shear,
shift) composed with an elastic displacement field (Simard et al. 2003). Out-of-image
samples repeat the border, which is always background for padded digits.
"""
import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, *, rotate_deg: float, scale: float, shear_deg: float,
            translate_px: float, elastic_alpha: float, elastic_sigma: float,
            generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    grid = F.affine_grid(_random_affine(n, h, rotate_deg, scale, shear_deg, translate_px, generator, x),
                         list(x.shape), align_corners=False)
    if elastic_alpha > 0:
        grid = grid + _elastic_field(n, h, w, elastic_alpha, elastic_sigma, generator, x)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _uniform(n, bound, generator, like):
    return (torch.rand(n, generator=generator, device=like.device) * 2 - 1) * bound


def _random_affine(n, size, rotate_deg, scale, shear_deg, translate_px, generator, like):
    """(n, 2, 3) matrices mapping output to input coordinates in [-1, 1] space."""
    angle = _uniform(n, math.radians(rotate_deg), generator, like)
    shear = _uniform(n, math.radians(shear_deg), generator, like)
    zoom = 1 + _uniform(n, scale, generator, like)
    shift = torch.stack([_uniform(n, translate_px, generator, like) for _ in range(2)], dim=1) * 2 / size
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix = torch.stack([torch.stack([cos, -sin + torch.tan(shear) * cos], 1),
                          torch.stack([sin, cos + torch.tan(shear) * sin], 1)], 1) / zoom.view(n, 1, 1)
    return torch.cat([matrix, shift.unsqueeze(2)], dim=2)


def _elastic_field(n, h, w, alpha, sigma, generator, like):
    """Uniform noise smoothed by a Gaussian of `sigma` px and scaled by `alpha` px.

    The smoothing is a pair of matrix products with Gaussian (Toeplitz) matrices, the same as
    a zero-padded separable convolution but several times faster than conv2d on one channel.
    """
    noise = torch.rand(n, 2, h, w, generator=generator, device=like.device) * 2 - 1
    field = _gaussian_matrix(h, sigma, like) @ noise @ _gaussian_matrix(w, sigma, like).T
    field = field.permute(0, 2, 3, 1) * alpha
    return field * torch.tensor([2 / w, 2 / h], dtype=like.dtype, device=like.device)


def _gaussian_matrix(size, sigma, like):
    """(size, size) matrix of a Gaussian blur truncated at 2 sigma, with zero padding."""
    positions = torch.arange(size, dtype=like.dtype, device=like.device)
    offsets = positions[:, None] - positions[None, :]
    weights = torch.exp(-offsets ** 2 / (2 * sigma ** 2)) * (offsets.abs() <= int(2 * sigma))
    return weights / weights[size // 2].sum()   # the middle row holds the whole kernel
