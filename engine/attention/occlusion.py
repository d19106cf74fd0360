"""Occlusion sensitivity (Zeiler & Fergus, 2014): how much the target's score drops when a window
of the input is covered."""

from __future__ import annotations

import itertools

import numpy as np

from engine.attention.common import AttributionError, PassCounter, Progress, target_scores
from engine.graph import Graph

#: more occluded copies than this are refused: choose a larger stride or window
MAX_WINDOWS = 4096


def check_window(size: tuple[int, ...], window: int, stride: int) -> None:
    """Refuse a window or stride that would leave pixels uncovered or mean nothing, for an input of spatial
    shape ``size``."""
    if not (1 <= window <= max(size)) or not (1 <= stride <= window):
        raise AttributionError(f"occlusion needs a window of 1..{max(size)} pixels and a stride of 1 up to the "
                               f"window (so that every pixel is covered), got window {window}, stride {stride}")


def window_starts(size: tuple[int, ...], window: int, stride: int) -> list[list[int]]:
    """Per spatial axis, where the windows start: every ``stride``, the last one aligned with the far edge; an axis
    shorter than the window has one window covering all of it."""
    starts = []
    for n in size:
        side = min(window, n)
        axis = list(range(0, n - side + 1, stride))
        if axis[-1] != n - side:
            axis.append(n - side)
        starts.append(axis)
    return starts


def occlusion(graph: Graph, params: dict, x: np.ndarray, target: int, window: int = 8, stride: int = 4,
              baseline: float = 0.0, batch_size: int = 32, progress: Progress | None = None,
              region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, dict]:
    """``Δ(p) = S(x) − S(x with the window at p set to baseline)`` for every window position ``p``;
    each pixel's value is the mean ``Δ`` of the windows covering it (signed: negative where covering
    helps the class). Windows are ``window`` long along every spatial axis (a square for an image, a cube for a
    volume; at most the axis's length) and slide by ``stride``; the last one is aligned with the far edge so that
    every pixel is covered. Occluded copies run as batches; ``progress`` counts the passes: the unoccluded
    input, then one per window. ``region``: a map output's box (``common.class_scores``)."""
    size = x.shape[2:]
    check_window(size, window, stride)
    starts = window_starts(size, window, stride)
    sides = [min(window, n) for n in size]
    positions = list(itertools.product(*starts))
    if len(positions) > MAX_WINDOWS:
        raise AttributionError(f"window {window} with stride {stride} makes {len(positions)} "
                               f"occluded copies (at most {MAX_WINDOWS}): use a larger stride")

    def box(position: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(p, p + side) for p, side in zip(position, sides))

    counter = PassCounter(len(positions) + 1, progress)
    reference = float(target_scores(graph, params, x, target, passed=counter, region=region)[0])
    deltas = np.empty(len(positions), dtype=np.float64)
    for begin in range(0, len(positions), batch_size):
        chunk = positions[begin:begin + batch_size]
        copies = np.repeat(x, len(chunk), axis=0)
        for i, position in enumerate(chunk):
            copies[(i, slice(None), *box(position))] = baseline
        deltas[begin:begin + len(chunk)] = reference - target_scores(graph, params, copies, target,
                                                                     batch_size=batch_size, passed=counter,
                                                                     region=region)
    total = np.zeros(size)
    count = np.zeros(size)
    for position, delta in zip(positions, deltas):
        total[box(position)] += delta
        count[box(position)] += 1
    return (total / count).astype(x.dtype), {"windows": len(positions), "window": window, "stride": stride}
