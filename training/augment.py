"""Batched, on-the-fly augmentation for standardized digit tensors (N, 1, H, W).

Everything is one `grid_sample` per batch: a random affine map (rotation, zoom, shear,
shift) composed with an elastic displacement field (Simard et al. 2003). Out-of-image
samples repeat the border, which is always background for padded digits.
"""
import itertools
import math

import torch
import torch.nn.functional as F

from training.letters import LETTER_STROKES


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


def strokes(x: torch.Tensor, *, mean: float, std: float, thickness: float, blur: float, low_res: float,
            generator: torch.Generator) -> torch.Tensor:
    """Pens and capture the normalizer passes on: thicker or thinner strokes, defocus blur and
    digits seen at 6-11 px then enlarged, each on a random share of the batch.

    `x` holds standardized digits; each altered digit's ink is stretched back to full contrast,
    as the normalizer does. `thickness` is the share of digits thickened or thinned (by a random
    blend with a 3x3 dilation or erosion), `blur` the share blurred (Gaussian, sigma up to 1.2 px),
    `low_res` the share reduced to 6-11 px (the digit's height) and enlarged back. Only the
    chosen digits are computed on, so the cost follows the shares.
    """
    if not (thickness or blur or low_res):
        return x
    n, _, h, w = x.shape
    ink = x * std + mean
    altered = torch.zeros(n, dtype=torch.bool, device=x.device)

    def chosen(share):
        pick = torch.rand(n, generator=generator, device=x.device) < share
        altered.logical_or_(pick)
        return pick.nonzero().squeeze(1)

    if thickness > 0 and len(i := chosen(thickness)):
        part = ink[i]
        grow = F.max_pool2d(part, 3, stride=1, padding=1)
        shrink = -F.max_pool2d(-part, 3, stride=1, padding=1)
        amount = torch.rand(len(i), 1, 1, 1, generator=generator, device=x.device) * 1.5 - 0.5   # -0.5 thin .. 1 thick
        ink[i] = torch.where(amount > 0, part + amount * (grow - part), part - amount * (shrink - part))
    if blur > 0 and len(i := chosen(blur)):
        ink[i] = _blur(ink[i], 0.4 + 0.8 * torch.rand(len(i), generator=generator, device=x.device))
    if low_res > 0 and len(i := chosen(low_res)):
        size = int(torch.randint(10, 18, (1,), generator=generator, device=x.device))   # of the 32 px field
        small = F.interpolate(ink[i], size=(size, size), mode="area")
        ink[i] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    part = ink[altered]
    ink[altered] = part / part.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (ink - mean) / std


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of (N, 1, H, W) with per-image sigma, as one grouped convolution."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    n = x.shape[0]
    out = F.conv2d(x.transpose(0, 1), kernel.view(n, 1, 1, -1), padding=(0, radius), groups=n)
    out = F.conv2d(out, kernel.view(n, 1, -1, 1), padding=(radius, 0), groups=n)
    return out.transpose(0, 1)


UNTURNABLE = (0, 1, 8)   # digits that stay digit-like turned a quarter


def not_digits(pairs: torch.Tensor, turnable: torch.Tensor, pen: torch.Tensor, *, mean: float,
               std: float, generator: torch.Generator) -> torch.Tensor:
    """Standardized images that hold no single digit, as the normalizer would frame them, made of
    handwriting: len(pairs) // 2 pairs of digits side by side, the `turnable` digits turned a
    quarter either way (digits that are then no digit: not `UNTURNABLE`) and as many pen drawings
    (scribbles and letters) picked from `pen` (`pen_pool`) as there are other images. Augment
    them with the digits for variety."""
    k = len(pairs) // 2
    ink = pairs * std + mean                                    # (2k, 1, 32, 32), the digit in rows/cols 6-25
    side_by_side = torch.cat([ink[:k, :, 2:30, 6:26], ink[k:2 * k, :, 2:30, 6:26]], dim=3)   # (k, 1, 28, 40)
    squeezed = F.interpolate(side_by_side, size=(14, 20), mode="bilinear", align_corners=False)
    two = torch.zeros(k, 1, 32, 32, dtype=pairs.dtype, device=pairs.device)
    two[:, :, 9:23, 6:26] = squeezed
    two = two.clamp(0, 1) / two.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    half = len(turnable) // 2
    turned = torch.cat([turnable[:half].rot90(1, dims=(2, 3)), turnable[half:].rot90(3, dims=(2, 3))])
    picked = torch.randint(len(pen), (k + len(turnable),), generator=generator, device=pairs.device)
    return torch.cat([(two - mean) / std, turned, pen[picked]])


def pen_pool(n: int, *, letters: float, mean: float, std: float, generator: torch.Generator,
             chunk: int = 128) -> torch.Tensor:
    """n standardized pen drawings, drawn once per training (drawing is the costly part of outlier
    exposure, and the augmentation varies them afterwards): random scribbles first, then the
    share `letters` of letters no digit resembles (`training.letters`)."""
    scribbles = n - round(n * letters)
    ink = torch.cat([_scribbles(min(chunk, scribbles - i), generator) for i in range(0, scribbles, chunk)]
                    + ([_letters(n - scribbles, generator)] if scribbles < n else []))
    return (ink / ink.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6) - mean) / std


def _scribbles(n: int, generator: torch.Generator) -> torch.Tensor:
    """n random pen paths (4-7 straight strokes) across the 20x20 digit box."""
    device = generator.device   # the box is rows and columns 6-26, 12-52 on the 64x64 canvas
    corners = 12 + 40 * torch.rand(n, int(torch.randint(5, 9, (1,), generator=generator, device=device)), 2,
                                   generator=generator, device=device)
    return _draw(_along(corners[:, :-1], corners[:, 1:], 24), generator)


def _letters(n: int, generator: torch.Generator) -> torch.Tensor:
    """n letters of `LETTER_STROKES`, each point moved by a shaky hand (2.5% of the letter's size)
    and the letter narrowed or widened by up to a quarter, its longer side fit to the 20x20 box."""
    device = generator.device
    names = list(LETTER_STROKES)
    choice = torch.randint(len(names), (n,), generator=generator, device=device)
    out = torch.empty(n, 1, 32, 32, device=device)
    for index, name in enumerate(names):
        rows = (choice == index).nonzero().squeeze(1)
        if not len(rows):
            continue
        strokes = LETTER_STROKES[name]
        control = torch.tensor([point for stroke in strokes for point in stroke], dtype=torch.float32, device=device)
        firsts = [0, *itertools.accumulate(map(len, strokes))][:-1]      # each stroke's first point
        starts = torch.tensor([first + i for first, stroke in zip(firsts, strokes) for i in range(len(stroke) - 1)],
                              device=device)                            # each segment's, pen lifts left out
        control = control + 0.025 * torch.randn(len(rows), *control.shape, generator=generator, device=device)
        control[..., 0] *= 0.75 + 0.5 * torch.rand(len(rows), 1, generator=generator, device=device)
        points = _along(control[:, starts], control[:, starts + 1], 32)
        low, high = points.amin(dim=1, keepdim=True), points.amax(dim=1, keepdim=True)
        size = (high - low).amax(dim=2, keepdim=True)
        points = (points - (low + high) / 2) * (40 / size) + 32
        out[rows] = _draw(points.flip(2), generator)          # (x, y) to (row, column)
    return out


def _along(starts: torch.Tensor, ends: torch.Tensor, steps: int) -> torch.Tensor:
    """(n, segments * steps, 2) points evenly along the straight segments from `starts` to `ends`
    (n, segments, 2)."""
    t = torch.linspace(0, 1, steps, device=starts.device)[None, None, :, None]
    return (starts[:, :, None] + t * (ends[:, :, None] - starts[:, :, None])).flatten(1, 2)


def _draw(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, 32, 32) pen lines through (n, m, 2) points (row, column) of a 64x64 canvas: drawn at
    twice the resolution 1.5 px wide (half of them 2.5 px), then reduced and softened like a
    scanned pen line."""
    n = len(points)
    pixels = points.round().long().clamp(0, 63)
    canvas = torch.zeros(n, 64 * 64, device=points.device)
    canvas.scatter_(1, pixels[..., 0] * 64 + pixels[..., 1], 1.0)
    pen = F.max_pool2d(canvas.view(n, 1, 64, 64), 3, stride=1, padding=1)
    wide = torch.rand(n, 1, 1, 1, generator=generator, device=points.device) < 0.5
    pen = torch.where(wide, F.max_pool2d(pen, 3, stride=1, padding=1), pen)
    return _blur(F.avg_pool2d(pen, 2), torch.full((n,), 0.5, device=points.device))
