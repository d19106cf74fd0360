"""Occlusion sensitivity (Zeiler & Fergus, 2014): how much the target's score drops when a window
of the input is covered."""

from __future__ import annotations

import numpy as np

from engine.attention.common import AttributionError, PassCounter, Progress, target_scores
from engine.graph import Graph

#: more occluded copies than this are refused: choose a larger stride or window
MAX_WINDOWS = 4096


def occlusion(graph: Graph, params: dict, x: np.ndarray, target: int, window: int = 8, stride: int = 4,
              baseline: float = 0.0, batch_size: int = 32, progress: Progress | None = None
              ) -> tuple[np.ndarray, dict]:
    """``Δ(p) = S(x) − S(x with the window at p set to baseline)`` for every window position ``p``;
    each pixel's value is the mean ``Δ`` of the windows covering it (signed: negative where covering
    helps the class). Windows slide by ``stride`` and the last one is aligned with the far edge so that
    every pixel is covered. Occluded copies run as batches; ``progress`` counts the passes: the unoccluded
    input, then one per window."""
    _, _, height, width = x.shape
    if not (1 <= window <= min(height, width)) or not (1 <= stride <= window):
        raise AttributionError(f"occlusion needs a window of 1..{min(height, width)} pixels and a stride of 1 up to "
                               f"the window (so that every pixel is covered), got window {window}, stride {stride}")
    starts_y = _starts(height, window, stride)
    starts_x = _starts(width, window, stride)
    if len(starts_y) * len(starts_x) > MAX_WINDOWS:
        raise AttributionError(f"window {window} with stride {stride} makes {len(starts_y) * len(starts_x)} "
                               f"occluded copies (at most {MAX_WINDOWS}): use a larger stride")
    positions = [(y, xx) for y in starts_y for xx in starts_x]
    counter = PassCounter(len(positions) + 1, progress)
    reference = float(target_scores(graph, params, x, target, passed=counter)[0])
    deltas = np.empty(len(positions), dtype=np.float64)
    for begin in range(0, len(positions), batch_size):
        chunk = positions[begin:begin + batch_size]
        copies = np.repeat(x, len(chunk), axis=0)
        for i, (y, xx) in enumerate(chunk):
            copies[i, :, y:y + window, xx:xx + window] = baseline
        deltas[begin:begin + len(chunk)] = reference - target_scores(graph, params, copies, target,
                                                                     batch_size=batch_size, passed=counter)
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for (y, xx), delta in zip(positions, deltas):
        total[y:y + window, xx:xx + window] += delta
        count[y:y + window, xx:xx + window] += 1
    return (total / count).astype(x.dtype), {"windows": len(positions), "window": window, "stride": stride}


def _starts(size: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts
