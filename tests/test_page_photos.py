"""The held-out page-photo set (training/page_photos.py) is labelled and the same on every run:
each digit photo carries its MNIST test digit's label and its kind, each no-digit photo None."""
import io

import numpy as np
from PIL import Image

from training import page_photos
from training.data import load_raw

KINDS = page_photos.DIGIT_KINDS + page_photos.NOT_DIGIT_KINDS


def test_the_set_is_labelled_and_drawn_the_same_on_every_run(mnist_root):
    items = page_photos.page_photos(mnist_root, per_digit_kind=1, per_other_kind=1)
    images, labels = load_raw(mnist_root, train=False)
    first = [page_photos.FIRST_TEST_DIGIT + k * page_photos.DIGITS_PER_KIND for k in range(len(page_photos.DIGIT_KINDS))]
    assert [kind for _, _, kind in items] == list(KINDS)
    assert [label for _, label, _ in items] == [int(labels[i]) for i in first] + [None] * len(page_photos.NOT_DIGIT_KINDS)
    for data, _, _ in items:
        photo = Image.open(io.BytesIO(data))
        assert photo.format == "JPEG" and photo.size in page_photos.MESSENGER_SIZES + page_photos.TWELVE_MP
    # drawn again from the seed alone: the same bytes
    for k in (0, KINDS.index("doodle")):
        digit = images[first[k]].numpy() if k < len(first) else None
        again = page_photos.scene(KINDS[k], digit, np.random.default_rng([page_photos.SEED, k, 0]))
        assert again == items[k][0], KINDS[k]
