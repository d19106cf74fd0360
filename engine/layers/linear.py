"""Fully connected layer as a forward/backward pair (PyTorch's ``F.linear``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.layers.grad_mode import input_grad_wanted


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """``out = x @ weight.T + bias``.

    Shape:
        x: (N, F_in); weight: (F_out, F_in) as PyTorch stores it; bias: (F_out,) or None;
        out: (N, F_out).
    """
    out = x @ weight.T
    if bias is not None:
        out = out + bias
    return out, (x, weight, bias is not None)


def linear_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """``dout: (N, F_out)`` -> ``(dx: (N, F_in), dweight: (F_out, F_in), dbias: (F_out,) or None)``."""
    x, weight, has_bias = cache
    dx = dout @ weight if input_grad_wanted() else None  # None inside grad_mode.without_input_grad()
    dweight = dout.T @ x
    dbias = dout.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
