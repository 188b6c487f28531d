"""MNIST test digits re-drawn the way users send them, as encoded image files.

Each style takes a 28x28 uint8 MNIST digit (white on black) and a numpy Generator and
returns the bytes of an image file.
"""
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


# The failure classes of real inputs: crops, low resolution, pens, paper, light. Each draws the
# digit at a random size, so the normalizer is developed against every scale it meets.

def _ink_map(digit: np.ndarray, size: int) -> np.ndarray:
    """The digit's ink (float, 1 = ink) cropped to its ink and enlarged to `size` px high."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = Image.fromarray(digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    width = max(1, round(size * crop.width / crop.height))
    return np.asarray(crop.resize((width, size), Image.BICUBIC), np.float32).clip(0, 255) / 255


def _paper(ink: np.ndarray, rng: np.random.Generator, margin: float) -> np.ndarray:
    """`ink` centred on a sheet `margin` times its height wider on each side (float, 1 = ink)."""
    h, w = ink.shape
    pad = int(round(h * margin))
    sheet = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    dy, dx = (int(rng.integers(-pad // 2, pad // 2 + 1)) if pad > 1 else 0 for _ in range(2))
    sheet[pad + dy:pad + dy + h, pad + dx:pad + dx + w] = ink
    return sheet


def _grey_page(ink: np.ndarray, paper: float = 255, pen: float = 0) -> Image.Image:
    return Image.fromarray(np.rint(paper * (1 - ink) + pen * ink).clip(0, 255).astype(np.uint8))


def frame_filling(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Cut out tightly: the strokes touch the edges; sometimes blurred by a scanner."""
    page = _grey_page(_ink_map(digit, int(rng.integers(24, 200))))
    if rng.random() < 0.5:
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return encode(page)


def low_resolution(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Scanned at 8-16 px, then sent as it is or enlarged (blurred by the enlargement)."""
    small = int(rng.integers(8, 17))
    page = _grey_page(_paper(_ink_map(digit, 40), rng, rng.choice([0.0, 0.1])))
    page = page.resize((max(1, round(small * page.width / page.height)), small), Image.BOX)
    if rng.random() < 0.8:
        factor = int(rng.integers(3, 9))
        page = page.resize((page.width * factor, page.height * factor),
                           Image.BILINEAR if rng.random() < 0.5 else Image.BICUBIC)
    return encode(page)


def pen_width(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A thin pen or a thick marker: the strokes thinned or thickened before scanning."""
    size = int(rng.integers(60, 160))
    ink = Image.fromarray(np.rint(_paper(_ink_map(digit, size), rng, 0.3) * 255).astype(np.uint8))
    k = 2 * int(rng.integers(1, max(2, size // 25))) + 1
    ink = ink.filter(ImageFilter.MaxFilter(k) if rng.random() < 0.5 else ImageFilter.MinFilter(min(k, 3)))
    return encode(_grey_page(np.asarray(ink, np.float32) / 255))


def coloured_ink(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Any pen colour on white or tinted paper, light colours included."""
    ink = _paper(_ink_map(digit, int(rng.integers(40, 160))), rng, 0.3)[..., None]
    paper = np.array([255, 255, 255]) - rng.uniform(0, 40, 3)
    pen = rng.uniform(0, 220, 3)
    pen[rng.integers(3)] = rng.uniform(0, 60)       # some channel always contrasts
    return encode(Image.fromarray(np.rint(paper * (1 - ink) + pen * ink).astype(np.uint8)))


def _photo(ink: np.ndarray, rng: np.random.Generator, paper_map: np.ndarray, quality=(70, 95)) -> bytes:
    """Ink over a paper brightness map (0-255), with a pen tone, sensor noise and JPEG."""
    pen = rng.uniform(10, 70)
    grey = paper_map * (1 - ink) + pen * ink + rng.normal(0, rng.uniform(1, 5), ink.shape)
    rgb = grey[..., None] * np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)])
    return encode(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG",
                  quality=int(rng.integers(*quality)))


def lined_paper(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Written on ruled (or squared) paper: lines cross the whole image, the digit spans 1-3 of them."""
    ink = _paper(_ink_map(digit, int(rng.integers(50, 150))), rng, rng.uniform(0.2, 0.8))
    h, w = ink.shape
    spacing = max(8.0, h / rng.uniform(2.5, 6))
    y, x = np.mgrid[0:h, 0:w]
    tilt = np.tan(np.radians(rng.uniform(-4, 4)))
    phase = rng.uniform(0, spacing)
    darkness, width = rng.uniform(0.25, 0.7), rng.uniform(0.6, 2.0)
    lines = darkness * (np.abs((y + tilt * x - phase + spacing / 2) % spacing - spacing / 2) < width / 2)
    if rng.random() < 0.3:  # squared paper
        lines = np.maximum(lines, darkness * (np.abs((x - tilt * y - phase + spacing / 2) % spacing - spacing / 2)
                                              < width / 2))
    paper = rng.uniform(200, 245)
    return _photo(np.maximum(ink, lines), rng, np.full(ink.shape, paper))


def shadow(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A hard shadow (a hand, the phone) across part of the page."""
    ink = _paper(_ink_map(digit, int(rng.integers(50, 150))), rng, rng.uniform(0.3, 1.0))
    h, w = ink.shape
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    angle = rng.uniform(0, 2 * np.pi)
    edge = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) > rng.uniform(-0.1, 0.35)
    paper = rng.uniform(190, 240) * np.where(edge, rng.uniform(0.45, 0.75), 1.0)
    return _photo(ink, rng, paper)


def page_edge(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A photo where the sheet does not fill the frame: a darker desk shows along one side."""
    ink = _paper(_ink_map(digit, int(rng.integers(50, 150))), rng, rng.uniform(0.5, 1.0))
    h, w = ink.shape
    paper = np.full(ink.shape, rng.uniform(200, 240))
    desk = rng.uniform(40, 140)
    y, x = np.mgrid[0:h, 0:w]
    tilt = np.tan(np.radians(rng.uniform(-6, 6)))
    depth = rng.uniform(0.05, 0.2)
    side = int(rng.integers(4))
    coord = [x + tilt * y, w - x + tilt * y, y + tilt * x, h - y + tilt * x][side]
    extent = w if side < 2 else h
    paper[coord < depth * extent] = desk
    return _photo(ink, rng, paper)


def noisy_page(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A large lossless page (e.g. 600x450) with a few grey levels of paper noise."""
    width = int(rng.integers(400, 900))
    page = np.full((width * 3 // 4, width), 255 - rng.uniform(0, 30))
    ink = _ink_map(digit, int(rng.integers(width // 8, width // 2)))
    top = int(rng.integers(0, page.shape[0] - ink.shape[0]))
    left = int(rng.integers(0, page.shape[1] - ink.shape[1]))
    region = page[top:top + ink.shape[0], left:left + ink.shape[1]]
    region[:] = region * (1 - ink) + rng.uniform(0, 60) * ink
    page += rng.uniform(-2.5, 2.5, page.shape)
    # noise compresses badly: PNG's default level takes about 130 ms on such a page, level 1 a
    # seventh of that for the same pixels (training's calibration draws 150 of these)
    return encode(Image.fromarray(np.rint(page).clip(0, 255).astype(np.uint8)), compress_level=1)


FAILURE_CLASSES = {"frame_filling": frame_filling, "low_resolution": low_resolution, "pen_width": pen_width,
                   "coloured_ink": coloured_ink, "lined_paper": lined_paper, "shadow": shadow,
                   "page_edge": page_edge, "noisy_page": noisy_page}
USER_STYLES = {**STYLES, **FAILURE_CLASSES}   # every style, in a fixed order (seeds follow it)


def ruled_page(size, rows, columns, width: int, grey: int, tilt: int) -> Image.Image:
    """A flat ruled or squared page as a drawing app makes one: white, with grey lines from side
    to side at `rows` and from top to bottom at `columns` (px), each `tilt` px lower or further
    right at its far end. Not a style: what `paste_digit` draws on."""
    w, h = size
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    for y in rows:
        draw.line([(0, y), (w, y + tilt)], fill=grey, width=width)
    for x in columns:
        draw.line([(x, 0), (x + tilt, h)], fill=grey, width=width)
    return page


def paste_digit(page: Image.Image, digit: np.ndarray, left: int, top: int, side: int) -> None:
    """Draw an MNIST digit in black, enlarged to `side` px, with its corner at (left, top)."""
    page.paste(0, (left, top), Image.fromarray(digit).resize((side, side), Image.BICUBIC))
