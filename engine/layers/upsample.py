"""Nearest-neighbour upsampling by whole factors (1D, 2D, 3D) as a forward/backward pair:
``F.interpolate(x, scale_factor=s, mode="nearest")`` for integer ``s``.

For spatial axis ``a`` with factor ``s_a >= 1``

    out_a = S_a * s_a,        out[..., i, ...] = x[..., floor(i / s_a), ...]

so each input value becomes an ``s_1 x s_2 x ...`` block of copies. The backward pass sums the
gradient over each block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _blocked(sizes: Sequence[int], scale: Sequence[int]) -> tuple[int, ...]:
    """The spatial shape with a block axis after each axis: (S_1, s_1, S_2, s_2, ...)."""
    return tuple(d for n, s in zip(sizes, scale) for d in (n, s))


def upsample_nearest_forward(x: np.ndarray, scale: Sequence[int]) -> tuple[np.ndarray, Any]:
    """x: (N, C, *S) -> out: (N, C, *(S_a * scale_a)), x's dtype; ``scale``: one int >= 1 per spatial axis."""
    scale = tuple(int(s) for s in scale)
    sizes = x.shape[2:]
    if len(scale) != len(sizes) or any(s < 1 for s in scale):
        raise ValueError(f"scale {scale} must hold one whole factor >= 1 for each of the {len(sizes)} spatial axes")
    n, c = x.shape[:2]
    if all(s == 1 for s in scale):  # a fresh array, as for any other factor (never a read-only view of x)
        return x.copy(), (scale, tuple(sizes))
    # a block axis of length 1 after each spatial axis, broadcast to the factor, then merged into it
    spread = x.reshape(n, c, *_blocked(sizes, (1,) * len(sizes)))
    out = np.broadcast_to(spread, (n, c, *_blocked(sizes, scale)))
    return out.reshape(n, c, *(m * s for m, s in zip(sizes, scale))), (scale, tuple(sizes))


def upsample_nearest_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (N, C, *(S_a * scale_a)) -> dx: (N, C, *S), the sum of each block's gradient."""
    scale, sizes = cache
    n, c = dout.shape[:2]
    blocks = dout.reshape(n, c, *_blocked(sizes, scale))
    return blocks.sum(axis=tuple(3 + 2 * a for a in range(len(sizes))))
