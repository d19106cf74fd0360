"""Depthwise convolution (one input channel per output channel) on an already padded input, fast.

A depthwise convolution does few multiply-adds per byte, so its speed is set by how the input is
walked. Short, strided image rows make NumPy slow; here every read is one long contiguous run:

* the padded input is split by stride phase, ``xp[..., p::stride]`` per spatial axis (a single phase
  when the stride is 1), and each phase is flattened over its spatial axes;
* the output is computed on a "wide" grid whose rows are as long as a phase's rows. Kernel offset ``j``
  then reads phase ``(j * dilation) % stride`` as one run of the flattened phase, starting at
  ``sum((j * dilation) // stride * row_stride)``. The wide grid's extra columns are garbage in the
  forward pass (cut off at the end) and zeros in the backward pass (so they add nothing).

Forward and weight gradient are one small matrix product per channel over that channel's patch rows,
``(1, taps) @ (taps, positions)`` and ``(taps, positions) @ (positions, 1)``, a few channels at a time so
that the patch rows stay in cache. The input gradient adds ``weight * dout`` back onto each run.

Shapes: xp: (N, C, *S) padded, taps: (C, prod(k)), out: (N, C, *out) (``engine.layers.conv`` repeats the
input channels first when there are several output channels per input channel).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CHUNK_ELEMENTS = 1 << 19  # patch elements per chunk of channels (2 MiB in float32, about L2's size)

Pads = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class PhasePlan:
    """Where each kernel offset reads, for one padded size, kernel, stride, dilation and output size."""

    padded_sizes: tuple[int, ...]
    stride: tuple[int, ...]
    out_sizes: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]  # the first index of every phase, per axis
    phase_sizes: tuple[int, ...]  # one phase's spatial shape, with a spare row on the first axis
    length: int  # positions of the wide output grid
    reads: tuple[tuple[int, int], ...]  # per kernel offset: (phase, first flat position)

    @property
    def wide_shape(self) -> tuple[int, ...]:
        return (self.out_sizes[0], *self.phase_sizes[1:])

    @property
    def flat_size(self) -> int:
        return int(np.prod(self.phase_sizes))


def plan_phases(
    padded_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_sizes: Sequence[int],
) -> PhasePlan:
    """The phase split and the reads of every kernel offset (row-major, as the weights are laid out)."""
    as_ints = [tuple(int(v) for v in values) for values in (padded_sizes, kernel, stride, dilation, out_sizes)]
    return _plan_phases(*as_ints)


@functools.lru_cache(maxsize=512)
def _plan_phases(
    padded_sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out_sizes: tuple[int, ...],
) -> PhasePlan:
    phase_sizes = [-(-size // s) for size, s in zip(padded_sizes, stride)]
    phase_sizes[0] += 1  # the wide grid's last row runs past the phase's end
    row_strides = [int(np.prod(phase_sizes[a + 1:])) for a in range(len(phase_sizes))]
    starts = tuple(itertools.product(*(range(s) for s in stride)))
    reads = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        reach = [j * d for j, d in zip(offsets, dilation)]
        phase = starts.index(tuple(r % s for r, s in zip(reach, stride)))
        reads.append((phase, sum((r // s) * rs for r, s, rs in zip(reach, stride, row_strides))))
    return PhasePlan(tuple(padded_sizes), tuple(stride), tuple(out_sizes), starts, tuple(phase_sizes),
                     out_sizes[0] * row_strides[0], tuple(reads))


def _phase_view(start: Sequence[int], stride: Sequence[int]) -> tuple[slice, ...]:
    return (slice(None), slice(None), *(slice(p, None, s) for p, s in zip(start, stride)))


def split_phases(x: np.ndarray, plan: PhasePlan, pads: Pads | None = None) -> np.ndarray:
    """x: (N, C, *S) -> (phases, N * C, flat phase size) of x padded by ``pads`` (zeros elsewhere).

    Padding and splitting happen in one copy: phase ``p`` holds padded positions ``p + m * stride``,
    which are input positions ``p + m * stride - before`` where those fall inside the input.
    """
    n, c = x.shape[:2]
    pads = pads if pads is not None else ((0, 0),) * (x.ndim - 2)
    phases = np.empty((len(plan.starts), n, c, *plan.phase_sizes), dtype=x.dtype)
    for i, start in enumerate(plan.starts):
        target, source = [i, slice(None), slice(None)], [slice(None), slice(None)]
        for axis, (p, s, (before, _), size) in enumerate(zip(start, plan.stride, pads, x.shape[2:])):
            first = max(0, -(-(before - p) // s))  # first m whose position p + m * s - before is >= 0
            last = max(first, -(-(size + before - p) // s))  # one past the last m inside the input
            target.append(slice(first, last))
            source.append(slice(p + first * s - before, size, s))
            for outside in (slice(0, first), slice(last, None)):  # padding: zero the slabs around the input
                phases[(i, slice(None), slice(None), *(slice(None),) * axis, outside)] = 0
        phases[tuple(target)] = x[tuple(source)]
    return phases.reshape(len(plan.starts), n * c, -1)


def merge_phases(phases: np.ndarray, plan: PhasePlan, n: int, c: int) -> np.ndarray:
    """The inverse of ``split_phases``: (phases, N * C, flat) -> (N, C, *padded sizes)."""
    xp = np.empty((n, c, *plan.padded_sizes), dtype=phases.dtype)
    for i, start in enumerate(plan.starts):
        target = xp[_phase_view(start, plan.stride)]
        cells = phases[i].reshape(n, c, *plan.phase_sizes)
        target[...] = cells[(slice(None), slice(None), *(slice(0, m) for m in target.shape[2:]))]
    return xp


def to_wide(y: np.ndarray, plan: PhasePlan) -> np.ndarray:
    """y: (N, C, *out) -> (N * C, wide length), zeros in the extra columns."""
    n, c = y.shape[:2]
    wide = np.zeros((n, c, *plan.wide_shape), dtype=y.dtype)
    wide[(slice(None), slice(None), *(slice(0, m) for m in y.shape[2:]))] = y
    return wide.reshape(n * c, plan.length)


def from_wide(wide: np.ndarray, plan: PhasePlan, n: int, c: int, bias: np.ndarray | None = None) -> np.ndarray:
    """(N * C, wide length) -> (N, C, *out), contiguous, plus ``bias: (C,)`` if given (in the same pass)."""
    grid = wide.reshape(n, c, *plan.wide_shape)
    inside = grid[(slice(None), slice(None), slice(None), *(slice(0, m) for m in plan.out_sizes[1:]))]
    if bias is None:
        return np.ascontiguousarray(inside)
    return np.add(inside, bias.astype(wide.dtype, copy=False).reshape((1, c) + (1,) * len(plan.out_sizes)))


def _chunks(rows: int, plan: PhasePlan):
    size = max(1, min(rows, CHUNK_ELEMENTS // (len(plan.reads) * plan.length)))
    for r0 in range(0, rows, size):
        yield r0, min(rows, r0 + size)


def _patches(phases: np.ndarray, plan: PhasePlan, r0: int, r1: int, buffer: np.ndarray) -> np.ndarray:
    """Patch rows of channels r0..r1: (r1 - r0, taps, wide length), built in ``buffer``."""
    patches = buffer[:r1 - r0]
    for t, (phase, begin) in enumerate(plan.reads):
        patches[:, t] = phases[phase, r0:r1, begin:begin + plan.length]
    return patches


def _row_taps(taps: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """taps: (C, T) -> (N * C, T): the weights of every (sample, channel) row."""
    return np.tile(taps.astype(dtype, copy=False), (n, 1))


def depthwise_forward(
    xp: np.ndarray, taps: np.ndarray, plan: PhasePlan, pads: Pads | None = None, bias: np.ndarray | None = None
) -> np.ndarray:
    """xp: (N, C, *S) padded (or to be padded by ``pads``), taps: (C, T), bias: (C,) or None -> (N, C, *out)."""
    n, c = xp.shape[:2]
    phases = split_phases(xp, plan, pads)
    weights = _row_taps(taps, n, xp.dtype)[:, None, :]  # (N * C, 1, T)
    out = np.empty((n * c, 1, plan.length), dtype=xp.dtype)
    buffer = None
    for r0, r1 in _chunks(n * c, plan):
        if buffer is None:
            buffer = np.empty((r1 - r0, len(plan.reads), plan.length), dtype=xp.dtype)
        np.matmul(weights[r0:r1], _patches(phases, plan, r0, r1, buffer), out=out[r0:r1])
    return from_wide(out, plan, n, c, bias)


def depthwise_weight_grad(xp: np.ndarray, dout: np.ndarray, plan: PhasePlan, pads: Pads | None = None) -> np.ndarray:
    """xp: (N, C, *S) padded (or to be padded by ``pads``), dout: (N, C, *out) -> dtaps: (C, T), batch summed."""
    n, c = xp.shape[:2]
    phases = split_phases(xp, plan, pads)
    dwide = to_wide(dout, plan)[:, :, None]  # (N * C, L, 1)
    dtaps = np.empty((n * c, len(plan.reads), 1), dtype=np.result_type(xp, dout))
    buffer = None
    for r0, r1 in _chunks(n * c, plan):
        if buffer is None:
            buffer = np.empty((r1 - r0, len(plan.reads), plan.length), dtype=xp.dtype)
        np.matmul(_patches(phases, plan, r0, r1, buffer), dwide[r0:r1], out=dtaps[r0:r1])
    return dtaps.reshape(n, c, -1).sum(axis=0)


def depthwise_input_grad(dout: np.ndarray, taps: np.ndarray, plan: PhasePlan) -> np.ndarray:
    """dout: (N, C, *out), taps: (C, T) -> dxp: (N, C, *padded sizes)."""
    n, c = dout.shape[:2]
    dwide = to_wide(dout, plan)
    weights = _row_taps(taps, n, dout.dtype)
    dphases = np.zeros((len(plan.starts), n * c, plan.flat_size), dtype=dout.dtype)
    tmp = np.empty_like(dwide)
    for t, (phase, begin) in enumerate(plan.reads):
        np.multiply(dwide, weights[:, t:t + 1], out=tmp)
        dphases[phase, :, begin:begin + plan.length] += tmp
    return merge_phases(dphases, plan, n, c)
