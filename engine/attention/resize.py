"""Bilinear resizing of 2D maps, as PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)``."""

from __future__ import annotations

import numpy as np


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two source indices and the weight of the second.

    Output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``, clamped at 0 (half-pixel
    centres, PyTorch's ``align_corners=False``).
    """
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, src - lo


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``maps: (..., h, w)`` -> ``(..., H, W)`` by bilinear interpolation (align_corners=False)."""
    out_h, out_w = size
    y0, y1, wy = _axis_weights(maps.shape[-2], out_h)
    x0, x1, wx = _axis_weights(maps.shape[-1], out_w)
    wy = wy.astype(maps.dtype)[:, None]
    wx = wx.astype(maps.dtype)
    rows = maps[..., y0, :] * (1 - wy) + maps[..., y1, :] * wy
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx
