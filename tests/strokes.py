"""Pen strokes recovered from a real MNIST digit, to draw it again the way a person would.

MNIST holds pictures, not pen paths. The digit is thinned to a one-pixel skeleton
(Zhang and Suen's parallel thinning, 1984) and the skeleton is walked into polylines: each
starts at a stroke end where there is one (a loop has none) and follows unvisited neighbours,
so a drawn 4 or 7 is two or three strokes and a 0 is one closed loop.
"""
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from harness.server import WEIGHTS
from model.inference import load_model
from model.preprocess import prepare, to_model_input
from training.data import ensure_mnist, load_raw

INK = 128   # MNIST's ink is 255 on a 0 background; its anti-aliased edge is what thinning removes

# The 8 neighbours of a pixel in Zhang and Suen's order P2..P9: north, then clockwise.
CLOCKWISE = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def skeleton(image: np.ndarray) -> np.ndarray:
    """Boolean one-pixel-wide skeleton of the digit's ink (pixels >= INK)."""
    ink = np.pad(image >= INK, 1)
    while True:
        changed = False
        for step in (0, 1):
            neighbours = np.stack([np.roll(ink, (-dy, -dx), axis=(0, 1)) for dy, dx in CLOCKWISE])
            count = neighbours.sum(axis=0)
            transitions = (~neighbours & np.roll(neighbours, -1, axis=0)).sum(axis=0)
            p2, p4, p6, p8 = neighbours[0], neighbours[2], neighbours[4], neighbours[6]
            if step == 0:
                open_side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                open_side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            removable = ink & (count >= 2) & (count <= 6) & (transitions == 1) & open_side
            if removable.any():
                ink &= ~removable
                changed = True
        if not changed:
            return ink[1:-1, 1:-1]


def strokes(image: np.ndarray) -> list[list[tuple[float, float]]]:
    """The digit as pen strokes: lists of (x, y) pixel centres in the 28x28 image's coordinates."""
    pixels = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton(image)))}

    def neighbours(p):
        # 4-neighbours first, so a walk follows the line rather than cutting its corners
        near = [(p[0] + dy, p[1] + dx) for dy, dx in CLOCKWISE]
        return [q for q in near[0::2] + near[1::2] if q in pixels]

    visited: set = set()
    paths = []
    while len(visited) < len(pixels):
        left = sorted(pixels - visited)
        ends = [p for p in left if len(neighbours(p)) == 1]
        path = [(ends or left)[0]]
        visited.add(path[0])
        while True:
            fresh = [q for q in neighbours(path[-1]) if q not in visited]
            if not fresh:
                # close a loop or join the line this stroke ran into
                joins = [q for q in neighbours(path[-1]) if q not in path[-3:]]
                if joins and len(path) > 2:
                    path.append(joins[0])
                break
            path.append(fresh[0])
            visited.add(fresh[0])
        if len(path) > 1:   # a lone skeleton pixel is noise, not a stroke
            paths.append([(x + 0.5, y + 0.5) for y, x in path])
    return paths


def redrawn_accuracy(count: int) -> float:
    """Share of the first `count` MNIST test digits the trained model reads right once they are
    redrawn from their strokes as web/pad.js draws them (a 280 px canvas, a round pen 1/14 of
    it wide), in-process with Pillow: how faithful the strokes the browser tests draw are."""
    images, labels = (t.numpy() for t in load_raw(ensure_mnist("data"), train=False))
    side, pen = 280, 20
    digits = []
    for image in images[:count]:
        pad = Image.new("L", (side, side), 255)
        drawing = ImageDraw.Draw(pad)
        for stroke in strokes(image):
            points = [(x / image.shape[1] * side, y / image.shape[0] * side) for x, y in stroke]
            drawing.line(points, fill=0, width=pen, joint="curve")
            for x, y in (points[0], points[-1]):   # round caps
                drawing.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=0)
        digits.append(prepare(pad))
    model = load_model(WEIGHTS)
    with torch.no_grad():
        predicted = model(to_model_input(torch.from_numpy(np.stack(digits)))).argmax(dim=1).numpy()
    return float((predicted == labels[:count]).mean())


if __name__ == "__main__":   # python -m tests.strokes [COUNT]
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{redrawn_accuracy(count):.2%} of the first {count} test digits read right, redrawn from their strokes")
