"""Random flat ruled and squared pages (`training.user_styles.ruled_page`), with or without a
digit: what experiments/preprocess_diff.py compares normalizers on and
experiments/preprocess_cost.py times."""
import numpy as np
from PIL import Image

from training.user_styles import encode, paste_digit, ruled_page


def random_template(rng: np.random.Generator) -> Image.Image:
    """A flat template no test was made from: 120-500 px wide, 2-7 ruled lines (half the
    pages squared as well), 1-4 px wide, grey 140-229, tilted up to 7 px across the page."""
    w = int(rng.integers(120, 500))
    h = int(w * rng.uniform(0.6, 1.4))
    lines, columns = int(rng.integers(2, 7)), int(rng.integers(0, 8)) if rng.random() < 0.5 else 0
    width, grey, tilt = int(rng.integers(1, 5)), int(rng.integers(140, 230)), int(rng.integers(0, 8))
    step = h // (lines + 1)
    offset = int(rng.integers(0, step // 2 + 1))
    column_step = w // (columns + 1)
    return ruled_page((w, h), range(offset + step // 2, h, step),
                      range(offset + column_step // 2, w, column_step) if columns else (), width, grey, tilt)


def on_random_template(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """`digit` drawn on a random template at 40-80% of its shorter side, at a random place."""
    page = random_template(rng)
    side = int(rng.uniform(0.4, 0.8) * min(page.size))
    paste_digit(page, digit, int(rng.integers(page.width - side)), int(rng.integers(page.height - side)), side)
    return encode(page)
