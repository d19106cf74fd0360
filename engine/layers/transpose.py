"""Transpose of the sample's axes as a forward/backward pair: the numbers stay, their order changes."""

from __future__ import annotations

from typing import Any

import numpy as np


def transpose_forward(x: np.ndarray, perm: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    """``x.permute(0, *(p + 1 for p in perm))``: ``perm`` reorders the axes after the batch axis.

    ``perm`` is 0-based over the sample's axes: output axis ``i`` (after the batch) is input axis
    ``perm[i]``. The result is C-contiguous (a copy), as the engine's layers expect.

    Shape: x: (N, *S) -> out: (N, *(S[p] for p in perm)), e.g. (N, G, C/G, H, W) with perm (1, 0, 2, 3)
    -> (N, C/G, G, H, W).
    """
    out = np.ascontiguousarray(x.transpose(0, *(p + 1 for p in perm)))
    return out, tuple(perm)


def transpose_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """The inverse permutation carries each gradient back to the position its value came from."""
    perm = cache
    inverse = tuple(int(i) for i in np.argsort(perm))
    return np.ascontiguousarray(dout.transpose(0, *(i + 1 for i in inverse)))
