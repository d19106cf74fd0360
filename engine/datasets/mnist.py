"""10,000 real MNIST handwritten digits, shipped in the repository (attribution: MNIST-LICENSE.md).

The file ``mnist-10k.npz`` holds ``images: (10000, 28, 28) uint8`` (white digit on black, as in MNIST)
and ``labels: (10000,) uint8``, already shuffled once with a fixed seed (``scripts/convert_mnist.py``).
The split is fixed: the first 8,000 digits are the training set, the last 2,000 the test set.

``load_mnist`` returns ``x: (N, 1, 28, 28) float32`` scaled to [0, 1] and, by default, normalised as
the shipped digit models expect, ``(x - MEAN) / STD``, with MEAN and STD measured on the training split.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

DATA_FILE = Path(__file__).with_name("mnist-10k.npz")
TRAIN_SIZE = 8000
TEST_SIZE = 2000
#: mean and standard deviation of the training split's pixels in [0, 1] (tests check them)
MEAN = 0.1314
STD = 0.3089

Split = Literal["train", "test", "all"]


@lru_cache(maxsize=1)
def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 digits as stored: ``images: (10000, 28, 28) uint8``, ``labels: (10000,) uint8`` (read-only)."""
    with np.load(DATA_FILE, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    if images.shape != (TRAIN_SIZE + TEST_SIZE, 28, 28) or labels.shape != (TRAIN_SIZE + TEST_SIZE,):
        raise ValueError(f"{DATA_FILE.name} is damaged: images {images.shape}, labels {labels.shape}; "
                         "re-create it with scripts/convert_mnist.py")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist(
    split: Split = "train", normalize: bool = True, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One split of the shipped digits.

    Returns ``x: (N, 1, 28, 28) float32`` and ``y: (N,) int64`` (the digit, 0-9). ``split`` is "train"
    (first 8,000), "test" (last 2,000) or "all". ``normalize=False`` keeps pixels in [0, 1];
    ``limit`` keeps only the first ``limit`` digits of the split.
    """
    images, labels = load_raw()
    if split == "train":
        part = slice(0, TRAIN_SIZE)
    elif split == "test":
        part = slice(TRAIN_SIZE, TRAIN_SIZE + TEST_SIZE)
    elif split == "all":
        part = slice(0, TRAIN_SIZE + TEST_SIZE)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    images, labels = images[part], labels[part]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive number of digits, got {limit}")
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32)[:, None] / np.float32(255)
    if normalize:
        x = (x - np.float32(MEAN)) / np.float32(STD)
    return x, labels.astype(np.int64)
