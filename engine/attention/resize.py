"""Linear resizing of maps along their trailing axes, as PyTorch's ``F.interpolate(mode=..., align_corners=False)``:
``linear`` for 1D maps ``(l,)``, ``bilinear`` for 2D ``(h, w)``, ``trilinear`` for 3D ``(d, h, w)``.

Each is the 1D rule applied along one axis after another (the interpolation is separable), so one function
serves all three.
"""

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


def resize_linear(maps: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """``maps: (..., *s)`` -> ``(..., *size)``: linear interpolation along each of the last ``len(size)`` axes in turn
    (align_corners=False). One axis: PyTorch's ``linear``; two: ``bilinear``; three: ``trilinear``."""
    out = maps
    for axis, out_size in zip(range(maps.ndim - len(size), maps.ndim), size):
        if out.shape[axis] == out_size:
            continue
        lo, hi, weight = _axis_weights(out.shape[axis], out_size)
        weight = weight.astype(maps.dtype).reshape((-1,) + (1,) * (maps.ndim - 1 - axis))
        out = np.take(out, lo, axis=axis) * (1 - weight) + np.take(out, hi, axis=axis) * weight
    return out


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``maps: (..., h, w)`` -> ``(..., H, W)`` by bilinear interpolation (align_corners=False)."""
    return resize_linear(maps, size)
