"""The model's input contract: how any image becomes the tensor LeNet-5 was trained on.

This one module runs in training, in evaluation, in the TorchServe handler inside the
`.mar` and in the tests, so the pixels the model sees at serving time are made by the
same code as the pixels it learned from.

The path has two steps, `prepare` (bytes or an image -> digit) then `to_model_input`:

1. `normalize_digit` turns an arbitrary image (any mode, size, polarity, transparency,
   lighting) into an MNIST-format digit: 28x28 uint8, white ink on black, the ink scaled
   into a 20x20 box keeping its aspect ratio and centred by its centre of mass.
   The training set itself is passed through it, and on a genuine MNIST digit it is
   (nearly always exactly) the identity, because MNIST was made the same way.
2. `to_model_input` pads the 28x28 digits to 32x32 (as LeCun et al. did; resizing would
   blur the strokes) and standardizes them.
"""
from __future__ import annotations

import io
import re
import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from scipy import ndimage

from model.errors import BlankImage, ImageTooLarge, NotAnImage

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
QUANTUM = 1 / 255         # the least noise sigma of a non-flat paper: 8-bit quantization
WEAK_INK = 0.2            # a digit's pixels stand this share of its contrast above the noise ...
STRONG_INK = 0.5          # ... and each of its parts holds a pixel this strong
MIN_PART = 0.05           # parts lighter than this share of the heaviest part are dust, not digit
SUPPORT_PX = 2            # faint edges this close to a digit's strokes belong to it
STROKE_TO_BACKGROUND = 1.5  # structures wider than this many stroke widths are paper, not ink
EDGE_CONTACT = 0.9        # a part touching this share of one side is beyond the page's edge ...
SOLID_FILL = 0.8          # ... when it fills this share of its bounding box or lies beside other parts
DOMINANT_PART = 0.25      # texture: the heaviest part holds less than this share of all parts' ink
LINE_SLOPE_STEP = np.tan(np.radians(1))
LINE_SLOPES = np.arange(-8, 9) * LINE_SLOPE_STEP  # ruled lines tilted up to 8 degrees ...
PATH_SLOPES = np.arange(-16, 17) * LINE_SLOPE_STEP / 2   # ... (followed pixel by pixel in half degrees)
LINE_SEARCH = 96          # ... (searched at this resolution, ...
LINE_BAND = 2             # ... in bands this many px wide) ...
LINE_SPAN = 0.6           # ... crossing this share of the image ...
LINE_THIN = 0.6           # ... no wider than this share of the strokes ...
LINE_OVERHANG = 0.1       # ... and this far past both ends of the other ink are not the digit
EDGE_RUN = 0.3            # ... or beside a part within the image, when it runs along this share of a side
LEVEL_BINS = 64           # the three-level split works on a histogram of this many bins ...
LEVEL_SPLITS = np.triu_indices(LEVEL_BINS + 1, k=1)  # ... and tries every pair of thresholds
SHADE_LIMIT = 0.25        # ink in a shadow is rescaled by the light, at most by 1 / this


NO_DIGIT = ("no digit found: the image is blank, has too little contrast or holds only paper, lines "
            "or texture; send a photo or scan of one handwritten digit")


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes in any format Pillow reads, refusing oversized images before decoding."""
    if not data:
        raise NotAnImage("the request body is empty: send the image file as the body")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # over Pillow's own, far higher limit: quote ours
        found = re.search(r"Image size \((\d+) pixels\)", str(exc))
        pixels = found[1] if found else f"over {2 * Image.MAX_IMAGE_PIXELS}"
        raise ImageTooLarge(f"the image is {pixels} pixels; the limit is {max_pixels}: send a smaller image") from None
    except Exception as exc:  # Pillow raises many types for garbage input
        raise NotAnImage(f"the body is not an image Pillow can decode ({exc.__class__.__name__})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} = {width * height} pixels; "
                            f"the limit is {max_pixels}: send a smaller image")
    if width == 0 or height == 0:
        raise NotAnImage("the image has no pixels")
    if img.format == "JPEG":  # decode at reduced scale: much faster for photos
        img.draft(img.mode, (WORK_SIZE, WORK_SIZE))
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


def prepare(image: bytes | Image.Image, max_pixels: int | None = None) -> np.ndarray:
    """An encoded image file (decoded under the `max_pixels` cap, which it then requires) or a
    decoded image -> the 28x28 uint8 digit the model reads: every image the server answers takes
    this path."""
    if isinstance(image, bytes):
        if max_pixels is None:
            raise TypeError("prepare() needs max_pixels to decode an image file")
        image = decode_image(image, max_pixels)
    return normalize_digit(image)


def to_model_input(digits: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, 28, 28) -> standardized float input (N, 1, 32, 32)."""
    pad = (INPUT_SIZE - MNIST_SIZE) // 2
    x = digits.unsqueeze(1).float().div_(255)
    x = F.pad(x, (pad, pad, pad, pad))
    return x.sub_(MEAN).div_(STD)


def _ink(img: Image.Image) -> np.ndarray:
    """Float map in [0, 1] of how much ink each pixel holds: the digit's strokes, zero elsewhere.

    Raises BlankImage when nothing digit-like stands out: blank or uniform images, paper
    texture, ruling, a shadow or a desk alone.
    """
    img = _resamplable(img)
    reduced = max(img.size) > WORK_SIZE
    if reduced:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.BOX)
    clean = _clean_ink(img)
    if clean is not None:
        return clean
    strength, paper, ink_class, light_paper = _ink_strength(img)
    paper_strength = strength[paper]
    paper_level = _median(paper_strength) if paper_strength.size else None
    if paper_level is None or paper_level == paper_strength.min():
        # a clean scan, a drawing app, MNIST itself: more than half of the paper lies exactly at
        # its level with nothing beyond it, so its noise sigma (MAD) is zero: whatever is not
        # paper is ink. (Not "more than half at one level" alone: a quiet JPEG photo is too.)
        flat = True
        if paper_level is None:
            residual = strength
            median, sigma = _noise(residual)
            floor = median + NOISE_SIGMAS * sigma
        else:
            residual, floor = strength - paper_level, 0.0
    else:       # a photo: paper is whatever is wider than the strokes (light, shadows, a desk)
        flat = False
        stroke = _stroke_width(ink_class & ~_touching_border(ink_class))
        size = 2 * int(STROKE_TO_BACKGROUND * stroke) + 3
        background = ndimage.grey_opening(strength, size=(size, size))
        residual = strength - background
        if light_paper:     # in a shadow the ink stands out less, in proportion to the light
            residual /= np.maximum(1.0 - background / max(strength.max(), QUANTUM), SHADE_LIMIT)
        median, sigma = _noise(residual[paper])
        floor = median + NOISE_SIGMAS * max(sigma, QUANTUM)
    contrast = float(residual.max()) - floor
    if contrast < MIN_CONTRAST:
        raise BlankImage(NO_DIGIT)
    weak = residual >= floor + WEAK_INK * contrast
    if not flat:
        lines = _ruled_lines(residual >= floor, weak, stroke)
    else:   # only directions a ruled line may cross are searched, the search being costly
        across, along = _ruling_may_cross(weak)
        if reduced and not (across and along):
            # reduction averages a thin line with the paper beside it into dashes, some too
            # faint for weak ink: follow lines through all the ink above the paper as well
            across, along = np.logical_or((across, along), _ruling_may_cross(residual > floor))
        lines = np.zeros_like(weak)
        if across or along:     # flat paper lies at the floor: only what is above it is drawn
            # grey lines with no darker ink give no stroke width: the lines' own stands in
            stroke = _stroke_width(ink_class) or _stroke_width(weak)
            lines = _flat_ruled_lines(residual > floor, weak, stroke, across, along)
    return _digit_ink(residual, floor, contrast, weak & ~lines, lines, flat)


def _ruled_lines(above_noise: np.ndarray, weak: np.ndarray, stroke: float) -> np.ndarray:
    """The pixels of ruled lines across a photo and along it, less where a stroke crosses or
    follows them: there the line is the stroke. The search also finds pieces of strokes both
    ways, and together they keep each other's crossings."""
    across = _long_lines(above_noise, weak, stroke)
    along = _long_lines(above_noise.T, weak.T, stroke).T
    if not (across.any() or along.any()):
        return across
    thicker = int(LINE_THIN * stroke) + 2
    crossed = _runs(above_noise, thicker, axis=0), _runs(above_noise, thicker, axis=1)
    return (across | along) & ~((across & crossed[0]) | (along & crossed[1]))


def _flat_ruled_lines(above_noise: np.ndarray, weak: np.ndarray, stroke: float, across: bool,
                      along: bool) -> np.ndarray:
    """`_ruled_lines` on flat paper, in the directions searched. Each direction is judged on its
    own: on squared paper the other direction's lines cross it as strokes would, and they are no
    ink of a digit for its lines to run on past. A stroke crosses a line where it is thicker
    than both the line and LINE_THIN of the strokes (with grey lines alone, the strokes are the
    lines)."""
    found = _thin_lines(above_noise, stroke, flat=True) if across else None
    found_along = _thin_lines(above_noise.T, stroke, flat=True) if along else None
    lines = np.zeros_like(weak)
    if not (found or found_along):
        return lines
    width, width_along = (_typical_stroke(f.pixels) if f else 0.0 for f in (found, found_along))
    # pieces of lines leaving the image too soon to be found lie along its sides: not a digit
    strip = int(max(width, width_along)) + 2
    inner = np.zeros_like(weak)
    inner[strip:-strip, strip:-strip] = True
    # runs across each direction's lines as long as a stroke crossing them
    crossed = _runs(above_noise, _crossing(width, stroke), axis=0) if found else None
    crossed_along = _runs(above_noise.T, _crossing(width_along, stroke), axis=0).T if found_along else None
    if found:
        ink = (weak & ~found_along.pixels.T if found_along else weak) & inner
        lines |= _past_the_ink(found, ink, flat=True) & ~crossed
    if found_along:
        ink = (weak & ~found.pixels if found else weak) & inner
        lines |= _past_the_ink(found_along, ink.T, flat=True).T & ~crossed_along
    if lines.any():     # what is left wholly along the sides, beside the lines or within one is theirs
        labels, count = ndimage.label(weak & ~lines, structure=np.ones((3, 3)))
        theirs = np.ones(count + 1, bool)
        theirs[labels[inner & ~ndimage.maximum_filter(lines, size=2 * SUPPORT_PX + 1)]] = False
        theirs[1:] |= _line_pieces(labels, count, [(found, crossed, False), (found_along, crossed_along, True)])
        theirs[0] = False
        lines |= theirs[labels]
    return lines


def _line_pieces(labels: np.ndarray, count: int, directions: list) -> np.ndarray:
    """Which of the `count` labelled parts lie wholly within one line's bands and fringes and
    cross it nowhere but where the other direction's lines do: pieces of lines the search missed
    (drifting into a fringe left unmarked). `directions`: (lines or None, runs crossing them,
    whether they were found in the transposed image) each way."""
    pieces = np.zeros(count, bool)
    if not count:
        return pieces
    y, x = np.nonzero(labels)
    own = labels[y, x]
    line_of = [(_line_of(x, y, lines) if turned else _line_of(y, x, lines)) if lines else None
               for lines, _, turned in directions]
    for (lines, crossed, _), line, other in zip(directions, line_of, line_of[::-1]):
        if lines:
            low, high = (np.asarray(f(line, own, np.arange(1, count + 1))) for f in (ndimage.minimum, ndimage.maximum))
            crossing = crossed[y, x] & (other < 0 if other is not None else True)
            pieces |= (low >= 0) & (low == high) & (np.bincount(own[crossing], minlength=count + 1)[1:] == 0)
    return pieces


def _digit_ink(residual: np.ndarray, floor: float, contrast: float, weak: np.ndarray, lines: np.ndarray,
               flat: bool) -> np.ndarray:
    """The ink map of the digit's parts among the `weak` pixels (ruled `lines` already taken out):
    parts with strong ink, not page edges (nor, in photos, border remnants), heavy enough beside
    the heaviest, with their faint edges. Raises BlankImage when no part stands out."""
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    mass = np.bincount(labels.ravel(), weights=(residual - floor).ravel(), minlength=count + 1)[1:]
    parts = np.bincount(labels[weak & (residual >= floor + STRONG_INK * contrast)], minlength=count + 1)[1:] > 0
    parts &= ~_page_edges(labels, count, parts)
    if not flat:
        parts &= ~_border_remnants(labels, count, parts, mass)
    if not parts.any() or mass[parts].max() < DOMINANT_PART * mass[parts].sum():
        raise BlankImage(NO_DIGIT)      # nothing left, or texture: many parts, none standing out
    keep = parts & (mass >= MIN_PART * mass[parts].max())
    digit = np.concatenate([[False], keep])[labels]
    support = ndimage.maximum_filter(digit, size=2 * SUPPORT_PX + 1) & ~lines   # a binary dilation, faster
    return np.where(support, np.clip((residual - floor) / contrast, 0.0, 1.0), 0.0).astype(np.float32)


def _clean_ink(img: Image.Image) -> np.ndarray | None:
    """The ink of a clean image by the cheap route, or None for any other image.

    Clean: grey (or a transparent canvas), at least half of it exactly at the paper's level
    with nothing on the paper's side of that level, and the whole border paper. MNIST itself,
    drawing apps and clean scans are clean; whatever is not paper is then the digit, so the
    full analysis (paper split, background, ruling, page edges, parts) cannot change the
    answer and is skipped. A frame-filling crop, ruling or a page edge touches the border.
    """
    grey = _single_grey(img)
    if grey is None:
        return None
    paper = _median(grey)
    if paper - grey.min() > grey.max() - paper:    # dark ink on light paper: make the ink bright
        grey, paper = 1.0 - grey, 1.0 - paper
    if grey[0].max() > paper or grey[-1].max() > paper or grey[:, 0].max() > paper \
            or grey[:, -1].max() > paper or grey.min() < paper:
        return None
    contrast = float(grey.max()) - paper
    if contrast < MIN_CONTRAST:
        raise BlankImage(NO_DIGIT)
    return np.clip((grey - paper) / contrast, 0.0, 1.0)


def _ruling_may_cross(ink: np.ndarray) -> tuple[bool, bool]:
    """Whether ruling may cross `ink` (across the image, along it): two or more straight paths
    tilted as ruling may be (LINE_SLOPES) run on it from one side to the other, over LINE_SPAN of
    the image, from runs along the side no thicker than a ruled line (LINE_THIN of the strokes,
    at least two search bands), and with paper beside them for LINE_OVERHANG of the image in each
    half, as lines running on past both ends of a digit have. A digit cut out tightly meets the
    sides in strokes as thick as its others, which end where the digit ends; a single bar of a
    tiny digit may pass for a line, two parallel ones hardly."""
    thin = max(2 * LINE_BAND, LINE_THIN * _typical_stroke(ink))
    return _thin_paths_from_side(ink, thin), _thin_paths_from_side(ink.T, thin)


def _thin_paths_from_side(mask: np.ndarray, thin: float) -> bool:
    """`_ruling_may_cross` for nearly horizontal paths from the left or the right side."""
    h, w = mask.shape
    starts, sides = [], (mask[:, 0], mask[:, -1])
    for side in sides:      # from the middle of each run along the side no thicker than a line
        bounds = np.flatnonzero(np.diff(np.concatenate([[0], side, [0]]).astype(np.int8)))
        first, end = bounds[::2], bounds[1::2]
        starts.append(((first + end - 1) // 2)[end - first <= thin + 2])
    if max(start.size for start in starts) < 2:
        return False
    y = np.concatenate(starts)
    reach = int(thin / 2) + 1
    padded = np.pad(mask, ((reach, reach), (0, 0)))      # off the image is paper
    near = mask | padded[reach - 1:-reach - 1] | padded[reach + 1:h + reach + 1]   # a path wavers by a pixel
    alone = near & ~padded[:h] & ~padded[2 * reach:]     # ... and a thin line has paper beside it
    distance = np.arange(w)                              # from the side the path starts at
    rise = np.rint(PATH_SLOPES[:, None] * distance).astype(np.intp)
    columns = np.where(np.arange(y.size)[:, None] < starts[0].size, distance, w - 1 - distance)[:, None, :]
    rows = y[:, None, None] + rise
    inside = (rows >= 0) & (rows < h)
    path = rows.clip(0, h - 1) * w + columns             # flat indices: faster than pairs
    on_path = inside & near.ravel()[path]
    spans = (np.count_nonzero(on_path, axis=2) >= LINE_SPAN * w) & on_path[..., -1]    # to the other side
    if not spans.any():
        return False
    thin_there = inside & alone.ravel()[path]
    overhang = LINE_OVERHANG * w
    near_half = np.count_nonzero(thin_there[..., :w // 2], axis=2) >= overhang
    far_half = np.count_nonzero(thin_there[..., w // 2:], axis=2) >= overhang
    lines = (spans & near_half & far_half).any(axis=1)
    return bool(max(np.count_nonzero(lines[:starts[0].size]), np.count_nonzero(lines[starts[0].size:])) >= 2)


def _typical_stroke(ink: np.ndarray) -> float:
    """The strokes' typical width in pixels: their area over half their outline's length (a band
    of width t and length l has area t*l and an outline 2*l long), which junctions and blots do
    not inflate as they do the widest stroke."""
    inner = ink.copy()                      # ink whose four neighbours are ink (or off the image)
    inner[1:] &= ink[:-1]
    inner[:-1] &= ink[1:]
    inner[:, 1:] &= ink[:, :-1]
    inner[:, :-1] &= ink[:, 1:]
    return 2.0 * np.count_nonzero(ink) / max(np.count_nonzero(ink & ~inner), 1)


def _single_grey(img: Image.Image) -> np.ndarray | None:
    """The image as one grey channel in [0, 1] when that loses nothing (grey pixels, or a
    transparent canvas laid on contrasting paper); None for colour or 32-bit images."""
    if img.mode == "L":
        return np.asarray(img, np.float32) / 255
    if img.mode == "RGB":
        rgb = np.asarray(img)
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            return None
        return rgb[..., 0].astype(np.float32) / 255
    if "A" in img.getbands():
        grey, alpha = (np.asarray(band, np.float32) / 255 for band in img.convert("LA").split())
        if alpha.min() == alpha.max():
            return _single_grey(img.convert("RGB"))
        return _on_contrasting_paper(grey, alpha)
    return None


def _on_contrasting_paper(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A drawing on a transparent canvas laid on paper that contrasts with its ink."""
    opaque = grey[alpha > 0.5]
    paper_level = 1.0 if opaque.size and _median(opaque) < 0.5 else 0.0
    return grey * alpha + paper_level * (1.0 - alpha)


def _touching_border(mask: np.ndarray) -> np.ndarray:
    """The parts of `mask` that touch the image's border (a shadow or a desk always does)."""
    labels, count = ndimage.label(mask)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    touching = np.isin(labels, border[border > 0])
    return touching if (mask & ~touching).any() else np.zeros_like(mask)


def _runs(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Pixels of `mask` on runs at least `length` px long along `axis`: across a ruled line, a
    stroke is thicker than the line."""
    shape = (length, 1) if axis == 0 else (1, length)
    return ndimage.binary_opening(mask, structure=np.ones(shape, bool))


def _border_remnants(labels: np.ndarray, count: int, parts: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Which parts touch the border, beside a part within the image, and are either lighter than
    it or run along a side: the tip of a shadow or the narrow end of a desk, which the background
    estimate could not follow. A stroke leaving the frame crosses a side; it does not run along it."""
    run = np.zeros(count, bool)
    touches = np.zeros(count + 1, bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        touches[side] = True
        run |= np.bincount(side, minlength=count + 1)[1:] >= EDGE_RUN * side.size
    border = touches[1:]
    inner = parts & ~border
    if not inner.any():
        return np.zeros(count, bool)
    return border & (run | (mass < mass[inner].max()))


def _page_edges(labels: np.ndarray, count: int, parts: np.ndarray) -> np.ndarray:
    """Which labelled parts are the desk beyond a page's edge or a shadow's: they run along
    nearly all of one side of the image and are solid, or lie beside other parts. A digit, even
    cut out tightly, touches each side at a few places only, or is the only part and not solid."""
    along = np.zeros(count, bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        along |= np.bincount(side, minlength=count + 1)[1:] >= EDGE_CONTACT * side.size
    if not along.any():
        return along
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    box_area = np.array([(b[0].stop - b[0].start) * (b[1].stop - b[1].start) for b in boxes])
    solid = area >= SOLID_FILL * box_area
    return along & (solid | (parts & ~along).any())


class _ThinLines(NamedTuple):
    """Thin, straight, nearly horizontal lines across a mask (`_thin_lines`), found in a copy
    reduced by `factor`: which of the copy's bands of `slope` (`width` columns) they fill."""
    pixels: np.ndarray      # the mask's pixels on them
    on_line: np.ndarray     # per band
    slope: float
    factor: int
    width: int
    count: int              # how many separate lines
    reach: np.ndarray       # (first, last) band of each, with a band of fringe each side


def _long_lines(mask: np.ndarray, ink: np.ndarray, stroke: float) -> np.ndarray:
    """Pixels of `mask` on thin, straight, nearly horizontal lines that run on past both ends of
    the other `ink`: ruled or squared paper (`_thin_lines`, then `_past_the_ink`)."""
    lines = _thin_lines(mask, stroke)
    return _past_the_ink(lines, ink) if lines else np.zeros_like(mask)


def _thin_lines(mask: np.ndarray, stroke: float, flat: bool = False) -> _ThinLines | None:
    """The thin, straight, nearly horizontal lines of `mask` that cross LINE_SPAN of it, None if
    none does: no wider than LINE_THIN of the strokes (a digit's own bar is as wide as its other
    strokes). Searched in a copy at most LINE_SEARCH px wide, at the slope whose best band
    reaches most columns. On `flat` paper, where whatever is not paper is digit or ruling, the
    copy keeps the image's last rows and columns (a line may run along the edge) and of equal
    slopes the one holding most lines at once wins (a slope a little off may still hold one line
    in one band); in photos either changed answers both ways, so they keep the plain search."""
    h, w = mask.shape
    if mask.any(axis=0).sum() < LINE_SPAN * w:       # nothing crosses enough of the image
        return None
    factor = -(-max(h, w) // LINE_SEARCH)
    small = mask
    if factor > 1:  # whole blocks: the last ones padded with paper or, in photos, the remainder cut off
        small = np.pad(mask, ((0, -h % factor), (0, -w % factor))) if flat else \
            np.pad(mask[:h - h % factor or h, :w - w % factor or w], ((0, max(factor - h, 0)), (0, max(factor - w, 0))))
        small = small.reshape(small.shape[0] // factor, factor, -1, factor).any(axis=(1, 3))
    sy, sx = np.nonzero(small)
    sh, sw = small.shape
    lines_first = flat and factor > 1
    # searched in half degrees there: the bands are wide, and a line tilted between two whole
    # degrees can lie half in one band, half in the next at both
    slopes, step = (PATH_SLOPES, LINE_SLOPE_STEP / 2) if lines_first else (LINE_SLOPES, LINE_SLOPE_STEP)
    coverage = _coverage(sy, sx, slopes, sh, sw)
    span = LINE_SPAN * sw if flat else np.inf      # in photos the best band alone decides
    widest = max(2, LINE_THIN * stroke / (LINE_BAND * factor))     # bands a thin line may fill
    best = _best_slope(coverage, span, widest, lines_first)
    slope, covered = slopes[best], coverage[best]
    fine = slope + step * np.array([0.0, -0.5, 0.5])     # this slope first: it wins ties
    fine_coverage = np.vstack([covered, _coverage(sy, sx, fine[1:], sh, sw)])
    best = _best_slope(fine_coverage, span, widest, lines_first)
    slope, covered = fine[best], fine_coverage[best]
    covered = covered >= LINE_SPAN * sw
    # a line is a run of covered bands (two where it straddles their boundary) no wider than a
    # fraction of the strokes, with a band of fringe each side; on flat paper searched in a
    # reduced copy, whose bands are `factor` times wider, only into a gap that leaves a band free
    # between two lines' fringes (dense squared paper would merge into one wide "line" over the
    # digit too)
    starts, ends = _run_bounds(covered)
    roomy = (starts[1:] - ends[:-1] >= 3) | (not lines_first)    # two fringes and a free band
    fringe_before, fringe_after = np.concatenate([[True], roomy]), np.concatenate([roomy, [True]])
    thin = np.zeros(covered.size + 2, bool)     # thin[band + 1]: room for the fringes
    reach = []
    for start, end, before, after in zip(starts, ends, fringe_before, fringe_after):
        if end - start <= widest:
            thin[start + 1 - before:end + 1 + after] = True
            reach.append((start - 1, end))
    on_line = thin[1:-1]
    y, x = np.nonzero(mask)
    line = on_line[_band(y / factor, x / factor, slope, sw)]
    if not line.any():
        return None
    pixels = np.zeros_like(mask)
    pixels[y[line], x[line]] = True
    lines = _ThinLines(pixels, on_line, slope, factor, sw, int(np.diff(thin.astype(np.int8)).clip(0).sum()),
                       np.array(reach))
    if not roomy.all():     # a line's pixels spilling into a fringe left unmarked are its own too
        sy, sx = np.nonzero(ndimage.binary_dilation(pixels, iterations=SUPPORT_PX) & mask & ~pixels)
        held = _line_of(sy, sx, lines) >= 0
        pixels[sy[held], sx[held]] = True
    return lines


def _line_of(y: np.ndarray, x: np.ndarray, lines: _ThinLines) -> np.ndarray:
    """For the pixels (y, x) of the mask `lines` was found in: which line's bands and fringes
    (`lines.reach`) hold each, -1 for none."""
    band = _band(y / lines.factor, x / lines.factor, lines.slope, lines.width)
    line = np.searchsorted(lines.reach[:, 1], band).clip(0, len(lines.reach) - 1)   # the first ending after
    return np.where((lines.reach[line, 0] <= band) & (band <= lines.reach[line, 1]), line, -1)


def _best_slope(coverage: np.ndarray, span: float, widest: float, lines_first: bool) -> int:
    """The index of the slope (a row of `_coverage`) whose best band reaches most columns; of
    equals, the one whose bands reaching `span` columns reach most together (ruling: every line
    at once, where a slope off by a little may still hold one line in one band), then the first.
    With `lines_first` (flat paper searched in a reduced copy), of equals the one holding most
    thin lines (runs of at most `widest` such bands) and then the one with fewest such bands come
    first: a slope off by a little smears each line over more bands, which reach more columns
    together, and beside a big digit's ink the line through it is smeared too wide for a line.
    (In an image searched at its own size, the two bars of a small bold "2" hold two thin lines
    at most slopes, and were taken for ruling.)"""
    def rank(row):
        held = row >= span
        together = -row[held].sum()
        if not lines_first:
            return (together,)
        starts, ends = _run_bounds(held)
        return -np.count_nonzero(ends - starts <= widest), np.count_nonzero(held), together

    reach = coverage.max(axis=1)
    return min(np.flatnonzero(reach == reach.max()), key=lambda index: rank(coverage[index]))


def _run_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of True in the 1-D `mask` starts, and where it ends (one past its last)."""
    steps = np.diff(np.concatenate([[0], mask, [0]]).astype(np.int8))
    return np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)


def _past_the_ink(lines: _ThinLines, ink: np.ndarray, flat: bool = False) -> np.ndarray:
    """`lines.pixels` if the lines run on past both ends of the largest part of the `ink` off
    them by LINE_OVERHANG of the image (a digit's bar ends where the digit ends), or if there
    is no such ink and there are two lines or more (ruled paper alone); else nothing. On `flat`
    paper a line may instead reach the image's side at one end, where the digit lies near it."""
    iy, ix = np.nonzero(ink)
    on_line = lines.on_line[_band(iy / lines.factor, ix / lines.factor, lines.slope, lines.width)]
    off_line = ~on_line & ~lines.pixels[iy, ix]
    rest = _largest_part(iy[off_line], ix[off_line], ink.shape)
    x = np.nonzero(lines.pixels)[1]
    margin = LINE_OVERHANG * ink.shape[1]
    if rest.size == 0:
        if lines.count < 2:      # one line and nothing else: a "1"; two or more: ruled paper alone
            return np.zeros_like(lines.pixels)
        return lines.pixels
    before, after = x.min() <= rest.min() - margin, x.max() >= rest.max() + margin
    if flat and (before or after):
        before |= x.min() == 0
        after |= x.max() == ink.shape[1] - 1
    return lines.pixels if before and after else np.zeros_like(lines.pixels)


def _crossing(line_width: float, stroke: float) -> int:
    """How long a run across flat lines `line_width` px wide must be to be a stroke crossing them."""
    return int(np.ceil(max(LINE_THIN * stroke, line_width))) + 2


def _largest_part(y: np.ndarray, x: np.ndarray, shape: tuple) -> np.ndarray:
    """The columns of the largest connected part of the pixels (y, x): the digit, not the piece
    of a ruled line that leaves the image too soon to be found as one."""
    if x.size == 0:
        return x
    mask = np.zeros(shape, bool)
    mask[y, x] = True
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    own = labels[y, x]
    return x[own == np.bincount(own).argmax()]


def _coverage(y: np.ndarray, x: np.ndarray, slopes: np.ndarray, h: int, w: int) -> np.ndarray:
    """(slopes, bands): how many columns each band of each slope reaches with a pixel."""
    bands = (h + 2 * w) // LINE_BAND + 2
    reached = np.zeros(len(slopes) * bands * w, bool)   # one flat index: much faster than three
    reached[(_band(y, x, slopes[:, None], w) + bands * np.arange(len(slopes))[:, None]) * w + x] = True
    return reached.reshape(len(slopes), bands, w).sum(axis=2)


def _band(y: np.ndarray, x: np.ndarray, slope: float, w: int) -> np.ndarray:
    """Which of the LINE_BAND-px-wide parallel bands of `slope` each pixel lies in (from 0)."""
    return (np.rint(y - slope * x).astype(np.int64) + w) // LINE_BAND


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


def _ink_strength(img: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """How far each pixel is from the paper towards the ink (any ink colour, either polarity),
    the mask of paper pixels, the mask of the darkest (or lightest) class and whether the paper is light.

    The paper is the one of the two brightness classes (Otsu) that holds most of the image's
    border: a digit cut out tightly touches the edges, but only at a few places. The ink
    strength is the largest difference of any colour channel from the paper's colour, so a
    yellow or red pen stands out as well as a black one.
    """
    if "A" in img.getbands():
        grey, alpha = (np.asarray(band, np.float32) / 255 for band in img.convert("LA").split())
        if alpha.min() < alpha.max():
            channels = _on_contrasting_paper(grey, alpha)[..., None]
        else:
            channels = np.asarray(img.convert("RGB"), np.float32) / 255
    elif img.mode in ("I", "F"):
        g = np.asarray(img, np.float32)
        lo, hi = float(g.min()), float(g.max())
        channels = ((g - lo) / (hi - lo) if hi > lo else np.zeros_like(g))[..., None]
    elif img.mode == "RGB":
        channels = np.asarray(img, np.float32) / 255
    else:
        channels = (np.asarray(img.convert("L"), np.float32) / 255)[..., None]
    grey = channels.mean(axis=2) if channels.shape[2] > 1 else channels[..., 0]
    dark_limit, light_limit = _three_levels(grey)
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    dark_border, light_border = (border <= dark_limit).mean(), (border > light_limit).mean()
    light_paper = light_border > dark_border or (light_border == dark_border and _median(grey) >= 0.5)
    paper, ink = (grey > light_limit, grey <= dark_limit) if light_paper else (grey <= dark_limit, grey > light_limit)
    paper_colour = np.array([_median(c[paper]) if paper.any() else _median(c) for c in channels.transpose(2, 0, 1)])
    difference = (paper_colour - channels) if light_paper else (channels - paper_colour)
    return (difference.max(axis=2) if channels.shape[2] > 1 else difference[..., 0]), paper, ink, light_paper


def _three_levels(values: np.ndarray) -> tuple[float, float]:
    """Two thresholds splitting values in [0, 1] into dark, middle and light classes of least
    within-class variance (three-class Otsu on a 64-bin histogram)."""
    bins = LEVEL_BINS
    hist = np.bincount(np.clip((values * bins).astype(np.int32), 0, bins - 1).ravel(), minlength=bins)
    weight = np.concatenate([[0], np.cumsum(hist)]).astype(np.float64)        # pixels below bin i
    moment = np.concatenate([[0], np.cumsum(hist * np.arange(bins))]).astype(np.float64)
    lo, hi = LEVEL_SPLITS                                                      # classes [0,lo) [lo,hi) [hi,bins)
    m = moment - moment[:, None]                    # of every class [i, j) at once; zero where it is empty
    spread = m * m / np.maximum(weight - weight[:, None], 1)
    best = int(np.argmax(spread[0, lo] + spread[lo, hi] + spread[hi, bins]))
    return lo[best] / bins - 1e-6, hi[best] / bins - 1e-6


def _stroke_width(ink: np.ndarray) -> float:
    """The widest stroke's width in pixels: twice the largest distance from ink to its edge."""
    return 2.0 * float(ndimage.distance_transform_edt(ink).max())


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
