"""Write MNIST test digits as PNG files, for curl, the smoke test and the benchmark.

    python -m scripts.sample_digits --count 10 --out artifacts/samples
"""
import argparse
from pathlib import Path

from PIL import Image

from training.data import ensure_mnist, load_raw


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--start", type=int, default=0, help="index of the first test digit")
    parser.add_argument("--out", default="artifacts/samples")
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args(argv)
    images, labels = load_raw(ensure_mnist(args.data_root), train=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.start, args.start + args.count):
        path = out / f"test{i:05d}-digit{labels[i].item()}.png"
        Image.fromarray(images[i].numpy()).save(path)
        paths.append(path)
    print(f"wrote {len(paths)} test digits to {out}/")
    return paths


if __name__ == "__main__":
    main()
