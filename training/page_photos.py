"""Photographed pages as a person sends them: a held-out evaluation set nobody tunes on.

MNIST test digits (from `FIRST_TEST_DIGIT` on, none of them in another set) written on paper and
photographed with a phone, and pages with no digit on them, in the same scenes. Its paper, ink
and camera models are written here and share no code with the training scenes or the other
evaluation sets (`training.user_styles`, `training.eval_sets`), so a score on it says how the
served model reads pages nobody fitted it to. Each digit keeps its MNIST shape: the grey digit
is enlarged smoothly, thinned to its centre line and drawn again with the pen's own width, so
its label stays right at any stroke width.

Digit kinds: `lined_ballpoint` (a notebook page with a margin line, the digit 1-4 lines tall,
blue or black ballpoint), `squared_felt_pen` (a large digit on squared paper, the stroke 2-3% of
its height), `dotted_paper`, `pencil` (light grey, thin), `small_on_big_page` (the digit 1/30
of the image's height), `tilted_page` (a whole page on a desk, turned and in perspective).
No-digit kinds: an empty page of each paper, a coffee ring, the letter B (handwritten or
typeset), a doodle. Every photo has uneven light, paper tint and texture, sensor noise, defocus
and JPEG compression; many a shadow; some are 12 MP.
"""
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from training.data import load_raw

SEED = 20281
FIRST_TEST_DIGIT = 7000       # user_styles draws test digits 0-999, second_camera 5000-6999
DIGITS_PER_KIND = 500         # kind k writes test digits FIRST_TEST_DIGIT + k * 500 onwards
DIGIT_KINDS = ("lined_ballpoint", "squared_felt_pen", "dotted_paper", "pencil", "small_on_big_page",
               "tilted_page")
NOT_DIGIT_KINDS = ("empty_plain", "empty_lined", "empty_squared", "empty_dotted", "coffee_ring",
                   "letter_B", "doodle")
MESSENGER_SIZES = ((1600, 1200), (1280, 960), (1200, 1600), (960, 1280), (1440, 1080), (1080, 1440))
TWELVE_MP = ((4000, 3000), (3000, 4000))
SHARE_12MP = {"small_on_big_page": 0.5, "tilted_page": 0.25}   # the other kinds: 0.1
PAPERS = {"lined_ballpoint": ("lined",), "squared_felt_pen": ("squared",), "dotted_paper": ("dotted",),
          "pencil": ("plain", "lined"), "empty_plain": ("plain",), "empty_lined": ("lined",),
          "empty_squared": ("squared",), "empty_dotted": ("dotted",)}   # the others: any paper
SHEET_PIXELS = 2000           # the sheet is drawn at most this wide or high: a 12 MP photo enlarges it
SKELETON_HEIGHT = 96          # px: the MNIST digit is thinned at this height
INKS = {  # colours on white paper (filters: the paper's light is multiplied by them) and density
    "ballpoint": ([(40, 60, 165), (30, 45, 120), (45, 45, 55)], (0.85, 1.0)),
    "felt_pen": ([(25, 25, 30), (30, 50, 150), (185, 35, 45), (30, 115, 60)], (0.85, 1.0)),
    "pencil": ([(95, 95, 100)], (0.35, 0.6)),   # light grey: 150-190 on white
}


def _smooth_noise(shape: tuple, cells: float, rng: np.random.Generator) -> np.ndarray:
    """Noise in [-1, 1] that varies over about `cells` pixels (a Gaussian-filtered coarse grid)."""
    coarse = ndimage.gaussian_filter(rng.standard_normal((max(3, int(shape[0] / cells) + 3),
                                                         max(3, int(shape[1] / cells) + 3))), 1.0)
    coarse = (coarse / (np.abs(coarse).max() + 1e-6)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize(shape[::-1], Image.BILINEAR))


def _ruling(length: int, start: float, spacing: float, width: float) -> np.ndarray:
    """Coverage (0-1) along one axis of lines `width` wide every `spacing` px from `start` on."""
    position = np.arange(length, dtype=np.float32) - start
    distance = np.abs((position + spacing / 2) % spacing - spacing / 2)
    return np.clip(width / 2 + 0.5 - distance, 0, 1) * (position > -width)


def _filter(rgb: np.ndarray, coverage: np.ndarray, colour, density: float = 1.0) -> None:
    """Lay a colour over `rgb` in place where `coverage` says (subtractive, like ink on paper)."""
    rgb *= 1 - (density * coverage)[..., None] * (1 - np.asarray(colour, np.float32) / 255)


def paper(shape: tuple, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """A sheet (float RGB, 0-255) of `kind` ("plain", "lined", "squared", "dotted"), its
    ruling's spacing in px (lined paper's lines lie at whole multiples of it) and the x of its
    margin line (0 where none)."""
    h, w = shape
    tint = np.array([rng.uniform(236, 252), rng.uniform(232, 250), rng.uniform(215, 246)], np.float32)
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = tint
    rgb *= (1 + rng.uniform(0.01, 0.03) * _smooth_noise(shape, 12, rng))[..., None]
    spacing, margin_x = h / rng.uniform(14, 30), 0.0
    if kind == "lined":
        lines = _ruling(h, int(rng.integers(2, 4)) * spacing, spacing, max(1.0, spacing * rng.uniform(0.02, 0.05)))
        _filter(rgb, np.broadcast_to(lines[:, None], shape), (rng.uniform(140, 185), rng.uniform(180, 210), 235))
        margin_x = rng.uniform(0.1, 0.25) * w
        margin = np.clip(max(1.5, spacing * 0.05) / 2 + 0.5 - np.abs(np.arange(w) - margin_x), 0, 1)
        _filter(rgb, np.broadcast_to(margin[None, :], shape), (235, rng.uniform(110, 160), rng.uniform(140, 180)))
    elif kind == "squared":
        spacing = h / rng.uniform(18, 40)
        width = max(1.0, spacing * rng.uniform(0.03, 0.07))
        grid = np.maximum(_ruling(h, rng.uniform(0, spacing), spacing, width)[:, None],
                          _ruling(w, rng.uniform(0, spacing), spacing, width)[None, :])
        grey = rng.uniform(150, 205)
        _filter(rgb, grid, (grey, grey + rng.uniform(0, 20), min(255, grey + rng.uniform(10, 40))))
    elif kind == "dotted":
        spacing = h / rng.uniform(14, 32)
        dy = np.abs((np.arange(h, dtype=np.float32) - rng.uniform(0, spacing) + spacing / 2) % spacing - spacing / 2)
        dx = np.abs((np.arange(w, dtype=np.float32) - rng.uniform(0, spacing) + spacing / 2) % spacing - spacing / 2)
        radius = max(0.8, spacing * rng.uniform(0.04, 0.08))
        dots = np.clip(radius + 0.5 - np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2), 0, 1)
        grey = rng.uniform(120, 190)
        _filter(rgb, dots, (grey, grey, grey))
    return rgb, spacing, margin_x


def _thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre line of a binary shape."""
    img = np.pad(binary, 1).astype(np.uint8)
    while True:
        removed = 0
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p3, p4, p5 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:]
            p6, p7, p8, p9 = img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(ring[:-1])
            transitions = sum((a == 0) & (b == 1) for a, b in zip(ring[:-1], ring[1:]))
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (c == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            c[remove] = 0
            removed += int(remove.sum())
        if not removed:
            return img[1:-1, 1:-1].astype(bool)


def digit_centre_line(mnist: np.ndarray) -> list:
    """Segments ((y0, x0), (y1, x1)) of a 28x28 MNIST digit's centre line, in units of its ink's
    height (y from 0 to 1), found at `SKELETON_HEIGHT` px."""
    rows, cols = np.flatnonzero(mnist.max(axis=1) > 40), np.flatnonzero(mnist.max(axis=0) > 40)
    crop = mnist[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = SKELETON_HEIGHT / crop.shape[0]
    big = Image.fromarray(crop).resize((max(1, round(crop.shape[1] * scale)), SKELETON_HEIGHT), Image.BICUBIC)
    line = _thin(np.asarray(big) > 90)
    ys, xs = np.nonzero(line)
    segments = [((y, x), (y, x)) for y, x in zip(ys, xs)]
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        neighbour = np.zeros_like(line)
        neighbour[:line.shape[0] - dy, max(0, -dx):line.shape[1] - max(0, dx)] = \
            line[dy:, max(0, dx):line.shape[1] + min(0, dx)]
        for y, x in zip(*np.nonzero(line & neighbour)):
            segments.append(((y, x), (y + dy, x + dx)))
    return [((y0 / SKELETON_HEIGHT, x0 / SKELETON_HEIGHT), (y1 / SKELETON_HEIGHT, x1 / SKELETON_HEIGHT))
            for (y0, x0), (y1, x1) in segments]


def pen(polylines: list, height: float, width: float) -> np.ndarray:
    """Coverage (0-1, anti-aliased) of polylines (lists of (y, x), 1 = `height` px) drawn with a
    round pen `width` px wide; the array is the drawing's bounding box plus the pen."""
    pad = int(width) + 3
    points = np.concatenate([np.asarray(p, np.float64) for p in polylines]) * height
    low = points.min(axis=0)
    size = np.ceil(points.max(axis=0) - low).astype(int) + 2 * pad + 1
    centre = Image.new("1", (int(size[1]), int(size[0])), 0)
    draw = ImageDraw.Draw(centre)
    for line in polylines:
        xy = [(x + pad, y + pad) for y, x in np.asarray(line, np.float64) * height - low]
        draw.line(xy, fill=1, width=1)
        draw.point(xy, fill=1)
    distance = ndimage.distance_transform_edt(~np.asarray(centre))
    return np.clip(width / 2 + 0.5 - distance, 0, 1).astype(np.float32)


def _arc(cy, cx, ry, rx, start, end, steps=16):
    t = np.radians(np.linspace(start, end, steps))
    return list(zip(cy - ry * np.sin(t), cx + rx * np.cos(t)))


HANDWRITTEN_B = [[(0, 0), (1, 0)], [(0, 0), *_arc(0.25, 0.4, 0.25, 0.3, 90, -90), (0.5, 0)],
                 [(0.5, 0), *_arc(0.75, 0.45, 0.25, 0.35, 90, -90), (1, 0)]]


def doodle(rng: np.random.Generator) -> list:
    """Polylines (unit height) of a star, a smiley, a house, a wave or a flower."""
    shape = int(rng.integers(5))
    if shape == 0:
        t = np.radians(np.arange(6) * 144 + 90)
        return [list(zip(0.5 - 0.5 * np.sin(t), 0.5 + 0.5 * np.cos(t)))]
    if shape == 1:
        return [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 40), _arc(0.35, 0.33, 0.04, 0.04, 0, 360, 8),
                _arc(0.35, 0.67, 0.04, 0.04, 0, 360, 8), _arc(0.5, 0.5, 0.28, 0.3, 200, 340, 12)]
    if shape == 2:
        return [[(0.4, 0), (1, 0), (1, 0.8), (0.4, 0.8), (0.4, 0), (0, 0.4), (0.4, 0.8)], [(1, 0.3), (0.7, 0.3), (0.7, 0.5), (1, 0.5)]]
    if shape == 3:
        x = np.linspace(0, 3, 60)
        return [list(zip(0.5 + 0.4 * np.sin(x * rng.uniform(3, 6)), x))]
    t = np.linspace(0, 2 * np.pi, 90)
    r = 0.35 + 0.13 * np.sin(int(rng.integers(4, 8)) * t)
    return [list(zip(0.5 - r * np.sin(t), 0.5 + r * np.cos(t)))]


def typeset_b(height: int) -> np.ndarray:
    """Coverage of a typeset "B" `height` px tall (Pillow's bundled font)."""
    font = ImageFont.load_default(int(height * 1.4))
    canvas = Image.new("L", (height * 2, height * 2), 0)
    ImageDraw.Draw(canvas).text((height // 4, 0), "B", fill=255, font=font)
    ink = np.asarray(canvas, np.float32) / 255
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0), np.flatnonzero(ink.max(axis=0) > 0)
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _wobble(polylines: list, rng: np.random.Generator, amount: float) -> list:
    """A hand's small tremor and a slant: each point moved a little, x sheared by y."""
    shear = rng.uniform(-0.25, 0.15)
    return [[(y + rng.normal(0, amount), x + shear * (1 - y) + rng.normal(0, amount)) for y, x in line]
            for line in polylines]


def coffee_ring(size: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage of a coffee cup's ring stain, `size` px across: a dark uneven rim, a faint inside."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    angle = np.arctan2(y, x)
    radius = size * 0.45 * (1 + 0.03 * np.sin(2 * angle + rng.uniform(0, 6)) + 0.02 * np.sin(5 * angle))
    distance = np.hypot(y, x)
    rim = np.exp(-((distance - radius) / (size * rng.uniform(0.006, 0.02))) ** 2)
    rim *= np.clip(0.55 + 0.45 * np.cos(angle - rng.uniform(0, 6)) + rng.uniform(0, 0.4), 0, 1)
    return np.clip(rim + rng.uniform(0.03, 0.12) * (distance < radius), 0, 1)


def _homography(src: np.ndarray, dst: np.ndarray) -> list:
    """PIL perspective coefficients sending output points `dst` to input points `src` (x, y)."""
    rows, rhs = [], []
    for (u, v), (x, y) in zip(src, dst):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def _desk(size: tuple, rng: np.random.Generator) -> Image.Image:
    """A table top: wood, grey laminate or dark cloth, with some grain."""
    w, h = size
    colour = np.array([[150, 105, 65], [120, 120, 125], [60, 55, 50], [190, 170, 140]][int(rng.integers(4))],
                      np.float32) * rng.uniform(0.8, 1.1)
    grain = 1 + 0.08 * _smooth_noise((h // 4, w // 4), rng.uniform(4, 30), rng)
    return Image.fromarray(np.clip(colour * grain[..., None], 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)


def photograph(rgb: np.ndarray, output: tuple, whole_page: bool, rng: np.random.Generator) -> bytes:
    """A phone's JPEG of the sheet `rgb`: the page framed close up with a little perspective, or
    (`whole_page`) lying turned on a desk; then light, shadow, defocus, noise and compression."""
    h, w = rgb.shape[:2]
    out_w, out_h = output
    sheet = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    sheet = sheet.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3) * max(w, h) / 1840))   # defocus
    if whole_page:
        scale = rng.uniform(0.6, 0.88) * min(out_h / h, out_w / w)
        turn = np.radians(rng.uniform(-12, 12))
        corners = (np.array([[0, 0], [w, 0], [w, h], [0, h]], float) - [w / 2, h / 2]) * scale
        corners = corners @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
        corners += [out_w / 2, out_h / 2] + rng.uniform(-0.05, 0.05, 2) * [out_w, out_h]
        corners += rng.uniform(-0.05, 0.05, (4, 2)) * scale * min(w, h)
        coefficients = _homography(np.array([[0, 0], [w, 0], [w, h], [0, h]], float), corners)
        page = sheet.convert("RGBA").transform(output, Image.PERSPECTIVE, coefficients, Image.BILINEAR,
                                               fillcolor=(0, 0, 0, 0))
        photo = _desk(output, rng)
        photo.paste(page, (0, 0), page)
    else:   # the frame sees the middle of a sheet 1.15 times its size, in perspective
        inset = np.array([w, h]) * 0.065
        frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], float) * (1 - 0.13) + inset
        frame += rng.uniform(-1, 1, (4, 2)) * inset * 0.9
        coefficients = _homography(frame, np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], float))
        photo = sheet.transform(output, Image.PERSPECTIVE, coefficients, Image.BILINEAR)
    img = np.asarray(photo, np.float32)
    # the light is smooth: computed on a grid 8 times coarser, then enlarged
    y = np.linspace(-0.5, 0.5, out_h // 8, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, out_w // 8, dtype=np.float32)[None, :]
    light = rng.uniform(0.7, 1.05) * (1 + rng.uniform(-0.35, 0.35) * x + rng.uniform(-0.35, 0.35) * y)
    light = light * (1 - rng.uniform(0.1, 0.5) * (x ** 2 + y ** 2))
    if rng.random() < 0.6:   # the phone's or a hand's shadow: a soft edge across the page
        direction = rng.uniform(0, 2 * np.pi)
        edge = (np.cos(direction) * x + np.sin(direction) * y - rng.uniform(0.05, 0.4)) / rng.uniform(0.01, 0.08)
        light = light * (1 - rng.uniform(0.25, 0.55) / (1 + np.exp(-np.clip(edge, -30, 30))))
    light = np.asarray(Image.fromarray(light.astype(np.float32), "F").resize(output, Image.BILINEAR))
    img *= light[..., None] * np.array([1, rng.uniform(0.96, 1.02), rng.uniform(0.86, 1.03)], np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1.5, 5)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()


def _place(rgb: np.ndarray, coverage: np.ndarray, top: float, left: float, colour, density: float) -> None:
    """Lay ink `coverage` on `rgb` with its top left corner at (top, left), clipped to the sheet."""
    t, l = int(top), int(left)
    h, w = coverage.shape
    region = rgb[max(t, 0):t + h, max(l, 0):l + w]
    cut = coverage[max(0, -t):max(0, -t) + region.shape[0], max(0, -l):max(0, -l) + region.shape[1]]
    _filter(region, cut, colour, density)


def writing(kind: str, h: int, spacing: float, view_height: float, rng: np.random.Generator) -> tuple:
    """(pen, height, stroke width) of what is written on a sheet `h` px high, in px of the sheet;
    `view_height` is how much of it the photo's height shows."""
    if kind == "lined_ballpoint":   # a 0.5 mm ballpoint on 6-9 mm ruling
        return "ballpoint", spacing * int(rng.integers(1, 5)) * rng.uniform(0.75, 0.95), \
            max(1.5, spacing * rng.uniform(0.05, 0.09))
    if kind == "squared_felt_pen":
        height = h * rng.uniform(0.35, 0.55)
        return "felt_pen", height, height * rng.uniform(0.02, 0.03)
    if kind == "pencil":
        height = h * rng.uniform(0.2, 0.45)
        return "pencil", height, max(1.2, height * rng.uniform(0.012, 0.03))
    height = view_height / rng.uniform(26, 34) if kind == "small_on_big_page" else h * rng.uniform(0.2, 0.45)
    if rng.random() < 0.5:
        return "ballpoint", height, max(1.5, height * rng.uniform(0.04, 0.09))
    return "felt_pen", height, max(1.5, height * rng.uniform(0.03, 0.08))


def drawing(kind: str, mnist: np.ndarray | None, ink: str, height: float, width: float,
            rng: np.random.Generator) -> np.ndarray | None:
    """Coverage of the digit, letter or doodle written on the page with the pen's texture (None
    where nothing is written)."""
    if mnist is not None:
        coverage = pen(digit_centre_line(mnist), height, width)
    elif kind == "letter_B":
        coverage = (pen(_wobble(HANDWRITTEN_B, rng, 0.01), height, width) if rng.random() < 0.5
                    else typeset_b(int(height)))
    elif kind == "doodle":
        coverage = pen(_wobble(doodle(rng), rng, 0.008), height, width)
    else:
        return None
    if ink == "pencil":   # graphite catches on the paper's grain
        return coverage * (0.55 + 0.45 * rng.random(coverage.shape, dtype=np.float32))
    return coverage * (0.85 + 0.15 * _smooth_noise(coverage.shape, max(4.0, height / 6), rng))   # pressure, flow


def scene(kind: str, mnist: np.ndarray | None, rng: np.random.Generator) -> bytes:
    """One photo of `kind`; `mnist` is the digit written on it (None for the no-digit kinds)."""
    output = tuple(int(v) for v in MESSENGER_SIZES[int(rng.integers(len(MESSENGER_SIZES)))])
    if rng.random() < SHARE_12MP.get(kind, 0.1):
        output = TWELVE_MP[int(rng.integers(2))]
    whole_page = kind == "tilted_page" or (kind.startswith("empty") and rng.random() < 0.3)
    papers = PAPERS.get(kind, ("plain", "lined", "squared", "dotted"))
    paper_kind = papers[int(rng.integers(len(papers)))]
    scale = min(1.0, SHEET_PIXELS / max(output))
    if whole_page:   # an A5 page
        shape = (int(max(output) * scale * 0.8), int(max(output) * scale * 0.8 / 1.41))
    else:
        shape = (int(output[1] * scale * 1.15), int(output[0] * scale * 1.15))
    rgb, spacing, margin_x = paper(shape, paper_kind, rng)
    h, w = shape
    ink, height, width = writing(kind, h, spacing, output[1] * scale, rng)
    colours, densities = INKS[ink]
    colour, density = colours[int(rng.integers(len(colours)))], rng.uniform(*densities)
    coverage = drawing(kind, mnist, ink, height, width, rng)
    if kind == "coffee_ring":
        size = int(min(h, w) * rng.uniform(0.3, 0.6))
        _place(rgb, coffee_ring(size, rng), rng.uniform(0.2, 0.8) * h - size / 2, rng.uniform(0.2, 0.8) * w - size / 2,
               (rng.uniform(150, 190), rng.uniform(105, 130), rng.uniform(60, 85)), rng.uniform(0.4, 0.8))
    if coverage is not None:
        ch, cw = coverage.shape
        # within what the photo shows whole (it crops at most 12.35% off a side, at a corner)
        if kind == "lined_ballpoint":   # the digit stands on a line, right of the margin
            lines = np.arange(np.ceil((0.13 * h + ch) / spacing), int(0.87 * h / spacing) + 1) * spacing
            top = lines[int(rng.integers(len(lines)))] - ch + int(width) + 3
            start = max(0.13 * w, margin_x + spacing / 2)
            left = rng.uniform(start, max(start, 0.87 * w - cw))
        else:   # anywhere the photo shows whole
            top = rng.uniform(0.13 * h, max(0.13 * h, 0.87 * h - ch))
            left = rng.uniform(0.13 * w, max(0.13 * w, 0.87 * w - cw))
        _place(rgb, coverage, top, left, colour, density)
    return photograph(rgb, output, whole_page, rng)


def page_photos(root, per_digit_kind: int = 50, per_other_kind: int = 15, seed: int = SEED) -> list:
    """[(JPEG bytes, label or None, kind)]: `per_digit_kind` photos of each digit kind, then
    `per_other_kind` of each no-digit kind. Photo i of a kind is the same whatever the counts."""
    if per_digit_kind > DIGITS_PER_KIND:
        raise ValueError(f"at most {DIGITS_PER_KIND} photos per digit kind")
    images, labels = load_raw(root, train=False)
    out = []
    for k, kind in enumerate(DIGIT_KINDS):
        for i in range(per_digit_kind):
            index = FIRST_TEST_DIGIT + k * DIGITS_PER_KIND + i
            rng = np.random.default_rng([seed, k, i])
            out.append((scene(kind, images[index].numpy(), rng), int(labels[index]), kind))
    for k, kind in enumerate(NOT_DIGIT_KINDS, start=len(DIGIT_KINDS)):
        for i in range(per_other_kind):
            out.append((scene(kind, None, np.random.default_rng([seed, k, i])), None, kind))
    return out
