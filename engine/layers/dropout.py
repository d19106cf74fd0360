"""Inverted dropout as a forward/backward pair (PyTorch's ``F.dropout``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def dropout_forward(x: np.ndarray, p: float, training: bool, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """Zero each value with probability ``p`` and scale the survivors by ``1 / (1 - p)``, in training only.

    The scaling keeps every value's expectation unchanged, so inference is the identity.
    ``p = 1`` zeros everything. Shape: x: any, out: same.
    """
    if not training or p == 0:
        return x, None
    if p >= 1:
        mask = np.zeros_like(x)
    else:
        mask = (rng.random(x.shape) >= p).astype(x.dtype) * np.asarray(1 / (1 - p), dtype=x.dtype)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """The same mask as the forward pass: ``dx = dout * mask``."""
    mask = cache
    return dout if mask is None else dout * mask
