"""Transformation robustness: each step of feature visualisation sees the picture a little moved, scaled and rotated.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017, "Transformation robustness": an image that
still activates the unit after small random jitter, scaling and rotation cannot be a fragile high-frequency
pattern tuned to exact pixel positions. Lucid's ``standard_transforms`` pad by 12 pixels, jitter by 8, scale by
0.9..1.1, rotate by -10..10 degrees and jitter by 4; here one affine resampling does all of it and keeps the
picture's size (the model's input size), so::

    source point = c + R(-angle) (output point - c - shift) / scale        c: the picture's centre

and the output pixel is the picture bilinearly sampled there. Samples outside the picture read 0, which in the
model's normalised input is the mean pixel (the transform is applied after the normalisation).

Bilinear sampling, ``out[:, o] = sum_k w_k(o) x[:, i_k(o)]`` over the four pixels around the source point,
follows PyTorch's ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` (pixel
centres at integer coordinates). It is linear in x; its backward scatters ``w_k(o) dout[:, o]`` back to
``i_k(o)`` (the source points are not optimised, so no gradient flows to them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- where each output pixel reads -------------------------------------------------------------------------

def affine_source_points(height: int, width: int, scale: float = 1.0, angle: float = 0.0,
                         shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """The source point (row, column) of every output pixel for a zoom by ``scale``, a rotation by ``angle``
    degrees (counter-clockwise as drawn, rows pointing down) and a shift ``(dy, dx)`` in pixels, all about the
    picture's centre ``((H - 1) / 2, (W - 1) / 2)``.

    Returns ``(sy, sx)``, each (H, W) float64.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    cy, cx = (height - 1) / 2, (width - 1) / 2
    oy, ox = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    dy, dx = oy - cy - shift[0], ox - cx - shift[1]
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # rows point down, so a counter-clockwise turn on screen is (dx, dy) -> (cos dx + sin dy, -sin dx + cos dy);
    # the source point undoes it: R(-angle)
    sx = cx + (cos * dx - sin * dy) / scale
    sy = cy + (sin * dx + cos * dy) / scale
    return sy, sx


# --- bilinear sampling ------------------------------------------------------------------------------------------

def bilinear_sample_forward(x: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> tuple[np.ndarray, Any]:
    """x: (C, H, W) sampled at the points ``(sy, sx)``: (Ho, Wo) each -> out: (C, Ho, Wo).

    Each output is ``sum over the 4 pixels (i, j) around (sy, sx) of (1 - |sy - i|) (1 - |sx - j|) x[:, i, j]``;
    pixels outside the picture count as 0.
    """
    channels, height, width = x.shape
    indices, weights = _corners(sy, sx, height, width)
    flat = x.reshape(channels, height * width)
    out = np.zeros((channels, sy.size), dtype=x.dtype)
    for index, weight in zip(indices, weights):
        out += flat[:, index] * weight.astype(x.dtype)
    return out.reshape(channels, *sy.shape), (indices, weights, x.shape)


def bilinear_sample_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (C, Ho, Wo) -> dx: (C, H, W), every output's gradient scattered to its four source pixels."""
    indices, weights, shape = cache
    channels, height, width = shape
    flat = dout.reshape(channels, -1)
    dx = np.zeros((channels, height * width), dtype=np.float64)
    for c in range(channels):
        for index, weight in zip(indices, weights):
            dx[c] += np.bincount(index, weights=flat[c] * weight, minlength=height * width)
    return dx.reshape(shape).astype(dout.dtype, copy=False)


def _corners(sy: np.ndarray, sx: np.ndarray, height: int, width: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Flat indices and bilinear weights of the 4 pixels around every source point; outside pixels get weight 0
    (and index 0, so the gather stays in bounds)."""
    sy, sx = sy.ravel(), sx.ravel()
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = sy - y0, sx - x0
    indices, weights = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            indices.append(np.where(inside, yy * width + xx, 0))
            weights.append(np.where(inside, wy * wx, 0.0))
    return indices, weights


# --- the random transforms ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RobustnessTransforms:
    """The random transform of one step: an integer shift of up to ``max_shift`` pixels on each axis (None: a
    sixteenth of the picture's size, 8 pixels at 128, as Lucid's jitter(8)), a zoom in
    ``[1 - max_scale, 1 + max_scale]`` and a rotation in ``[-max_angle, max_angle]`` degrees (Lucid's ranges)."""

    max_shift: int | None = None
    max_scale: float = 0.1
    max_angle: float = 10.0

    def shift_for(self, height: int, width: int) -> int:
        return self.max_shift if self.max_shift is not None else max(1, round(min(height, width) / 16))

    def sample(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """One random transform's source points ``(sy, sx)``, each (H, W)."""
        jitter = self.shift_for(height, width)
        shift = (float(rng.integers(-jitter, jitter + 1)), float(rng.integers(-jitter, jitter + 1)))
        scale = float(rng.uniform(1 - self.max_scale, 1 + self.max_scale))
        angle = float(rng.uniform(-self.max_angle, self.max_angle))
        return affine_source_points(height, width, scale, angle, shift)


NO_TRANSFORMS = RobustnessTransforms(max_shift=0, max_scale=0.0, max_angle=0.0)
