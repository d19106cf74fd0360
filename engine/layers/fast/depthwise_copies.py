"""The depthwise path's shifted row copies: where every kernel offset reads, and how the copies are filled.

A depthwise convolution (``engine.layers.fast.depthwise``) multiplies long contiguous runs; these copies are
what makes the runs contiguous:

* along the **last** spatial axis, the input is copied once per kernel offset ``j`` (``kw`` copies,
  "shifted rows"): ``rows[j][..., w] = x[..., j * dilation + w * stride]`` for every output column ``w``,
  so a row of the copy is exactly an output row long;
* along the **leading** axes, the copies are split by stride phase (``p::stride``) and flattened, so
  that kernel offset ``i`` reads one contiguous run of ``positions`` values starting at
  ``(i * dilation // stride) * row_stride`` of phase ``(i * dilation) % stride``. In 3D the middle axis
  is "wide": the output is computed on phase-long rows and the extra ones are cut off at the end.

``plan_depthwise`` works the layout out once per size (cached); ``copy_rows`` fills the copies, padding
while copying (no padded array), in one of three ways: whole rows shifted at once (stride 1, "same" width),
a copy made from a later offset's copy moved by one column (stride a multiple of the dilation), or one
strided copy per offset (step-2 columns read in pairs, ``engine.layers.fast.strided_copy``). The copies
replaced patch matrices that held each value ``kh * kw`` times (24d9fdd: "no 9x patch copies"); the two
cheaper ways came with the lean inference pass (a14fe21), for small images with many channels such as
14 x 14 x 512. No separate figure was recorded for either; the depthwise path's time as a whole is what
``scripts/bench_engine.py --breakdown`` reports.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.layers.fast.strided_copy import copy_columns

Pads = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class DepthwisePlan:
    """Where every kernel offset reads, for one padded size, kernel, stride, dilation and output size."""

    padded_sizes: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    out_sizes: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]  # first index of every phase of the leading axes
    lead_sizes: tuple[int, ...]  # one phase's leading shape (a spare row on the first axis in 3D)
    length: int  # positions of the (wide) output grid
    reads: tuple[tuple[int, int], ...]  # per leading kernel offset (row-major): (phase, first position)

    @functools.cached_property
    def wide_shape(self) -> tuple[int, ...]:
        """The output grid the products fill: out sizes, except phase-long middle axes in 3D."""
        return (*self.out_sizes[:1], *self.lead_sizes[1:], self.out_sizes[-1])[-len(self.out_sizes):]

    @functools.cached_property
    def flat_size(self) -> int:
        return int(np.prod(self.lead_sizes, dtype=np.int64)) * self.out_sizes[-1]


def plan_depthwise(
    padded_sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_sizes: Sequence[int],
) -> DepthwisePlan:
    """The copies' layout and every leading kernel offset's read (cached: a network reuses a few)."""
    as_ints = [tuple(int(v) for v in values) for values in (padded_sizes, kernel, stride, dilation, out_sizes)]
    return _plan(*as_ints)


@functools.lru_cache(maxsize=512)
def _plan(
    padded_sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out_sizes: tuple[int, ...],
) -> DepthwisePlan:
    lead = len(kernel) - 1
    lead_sizes = [-(-padded_sizes[a] // stride[a]) for a in range(lead)]
    if lead >= 2:
        lead_sizes[0] += 1  # the wide grid's last rows run past the phase's end
    row = out_sizes[-1]
    row_strides = [int(np.prod(lead_sizes[a + 1:], dtype=np.int64)) * row for a in range(lead)]
    length = out_sizes[0] * row_strides[0] if lead else row
    starts = tuple(itertools.product(*(range(stride[a]) for a in range(lead))))
    reads = []
    for offsets in itertools.product(*(range(kernel[a]) for a in range(lead))):
        reach = [j * dilation[a] for a, j in enumerate(offsets)]
        phase = starts.index(tuple(r % stride[a] for a, r in enumerate(reach)))
        reads.append((phase, sum((r // stride[a]) * row_strides[a] for a, r in enumerate(reach))))
    return DepthwisePlan(padded_sizes, kernel, stride, dilation, out_sizes, starts, tuple(lead_sizes), length,
                         tuple(reads))


def _copies(plan: DepthwisePlan, sizes: Sequence[int], pads: Pads):
    """For each (phase, last-axis offset): the target cells in the copies, the source cells in x, and the
    slabs of the target that lie in the padding. ``sizes`` are x's spatial sizes (unpadded)."""
    return _copy_steps(plan, tuple(int(n) for n in sizes), tuple((int(b), int(a)) for b, a in pads))


@functools.lru_cache(maxsize=512)
def _copy_steps(plan: DepthwisePlan, sizes: tuple[int, ...], pads: tuple[tuple[int, int], ...]):
    lead = len(plan.kernel) - 1
    steps = []
    for phase, start in enumerate(plan.starts):
        for j in range(plan.kernel[-1]):
            target, source, outside = [], [], []
            begins = [*start, j * plan.dilation[-1]]
            limits = [*plan.lead_sizes, plan.out_sizes[-1]]
            for a in range(lead + 1):
                p, s, (before, _), size = begins[a], plan.stride[a], pads[a], sizes[a]
                first = min(limits[a], max(0, -(-(before - p) // s)))  # first m with p + m*s - before >= 0
                last = max(first, min(limits[a], -(-(size + before - p) // s)))  # one past the last inside x
                target.append(slice(first, last))
                x_first = p + first * s - before
                source.append(slice(x_first, x_first + (last - first - 1) * s + 1, s) if last > first else slice(0, 0))
                if first > 0:  # only slabs that exist are zeroed
                    outside.append((a, slice(0, first)))
                if last < limits[a]:
                    outside.append((a, slice(last, None)))
            steps.append((phase, j, tuple(target), tuple(source), tuple(outside)))
    return tuple(steps)


def copy_rows(x: np.ndarray, plan: DepthwisePlan, pads: Pads | None = None) -> np.ndarray:
    """x: (N, C, *S), padded by ``pads`` while copying -> (phases, N * C, kw, flat size)."""
    n, c = x.shape[:2]
    pads = pads if pads is not None else ((0, 0),) * (x.ndim - 2)
    kw = plan.kernel[-1]
    rows = np.empty((len(plan.starts), n, c, kw, *plan.lead_sizes, plan.out_sizes[-1]), dtype=x.dtype)
    recipe = _whole_row_recipe(plan, tuple(x.shape[2:]), tuple((int(b), int(a)) for b, a in pads))
    if recipe is not None:
        _copy_shifted_runs(x, rows, recipe)
    else:
        _copy_by_phase(x, rows, plan, pads)
    return rows.reshape(len(plan.starts), n * c, kw, -1)


def _copy_by_phase(x: np.ndarray, rows: np.ndarray, plan: DepthwisePlan, pads: Pads) -> None:
    """``copy_rows`` in general: one strided copy per (phase, last-axis offset ``j``), padding zeroed.

    Where the stride along the last axis is a multiple ``m`` of the dilation, offset ``j``'s copy is offset
    ``j + m``'s moved along by one output column (both read the padded input at ``j * dilation + stride * w``
    and ``(j + m) * dilation + stride * (w - 1)``): it is made from that copy by one contiguous shift, and
    only its first column is read from x. Strided reads are what cost here; step-2 columns are read in pairs
    (``engine.layers.fast.strided_copy``).
    """
    stride, dilation, kw = plan.stride[-1], plan.dilation[-1], plan.kernel[-1]
    step = stride // dilation if stride % dilation == 0 else 0
    flat = rows.reshape(*rows.shape[:4], -1)  # (phases, N, C, kw, flat size)
    everything = (slice(None), slice(None))
    for phase, j, target, source, outside in reversed(_copies(plan, x.shape[2:], pads)):  # later offsets first
        block = rows[phase, :, :, j]
        if step and j + step < kw:
            flat[phase, :, :, j, 1:] = flat[phase, :, :, j + step, :-1]
            if not target[-1].start == 0 < target[-1].stop:  # the first column lies in the padding
                block[..., 0] = 0
                continue
            for axis, cells in outside:  # padding rows of the first column
                if axis < len(target) - 1:
                    block[(*everything, *(slice(None),) * axis, cells, ..., 0)] = 0
            block[(*everything, *target[:-1], 0)] = x[(*everything, *source[:-1], source[-1].start)]
            continue
        for axis, cells in outside:  # zero padding
            block[(*everything, *(slice(None),) * axis, cells)] = 0
        copy_columns(block[(*everything, *target)], x[(*everything, *source[:-1])], source[-1])


@dataclass(frozen=True)
class _WholeRows:
    """Index tuples of ``_copy_shifted_runs``, worked out once per plan, input size and padding."""

    zero_slabs: tuple[tuple, ...]  # padding slabs of the leading axes, every offset at once (into rows[0])
    flat_sizes: tuple[int, ...]  # one offset's copy with the last leading axis and the columns flattened
    source_sizes: tuple[int, ...]  # x's spatial sizes, the last two flattened
    runs: tuple[tuple[int, tuple, slice, tuple | None], ...]  # (j, target in the flat copy, source, wrapped columns)


@functools.lru_cache(maxsize=512)
def _whole_row_recipe(
    plan: DepthwisePlan, sizes: tuple[int, ...], pads: tuple[tuple[int, int], ...]
) -> _WholeRows | None:
    """The whole-row copies, or None where they do not apply. They apply where every copy is x shifted along
    the last axis by less than a row, rows as long as x's: stride 1 everywhere, as many output columns as
    input columns ("same" padding along the last axis)."""
    width = sizes[-1]
    if not (all(s == 1 for s in plan.stride) and plan.out_sizes[-1] == width and len(plan.starts) == 1
            and all(abs(j * plan.dilation[-1] - pads[-1][0]) < width for j in range(plan.kernel[-1]))
            and all(b >= 0 and a >= 0 for b, a in pads)):
        return None
    lead = len(plan.kernel) - 1
    height = sizes[-2] if lead else 1
    zero_slabs = []
    for axis in range(lead):
        before, size = pads[axis][0], sizes[axis]
        index = (slice(None),) * (3 + axis)
        if before:
            zero_slabs.append((*index, slice(0, before)))
        if before + size < plan.lead_sizes[axis]:
            zero_slabs.append((*index, slice(before + size, None)))
    inner = (slice(None), slice(None), *(slice(b, b + m) for (b, _), m in zip(pads[:lead - 1], sizes[:lead - 1])))
    first = (pads[lead - 1][0] if lead else 0) * width
    rows_region = (*inner, *((slice(first // width, first // width + height),) if lead else ()))
    runs = []
    for j in range(plan.kernel[-1]):
        shift = j * plan.dilation[-1] - pads[-1][0]
        lo, hi = max(0, -shift), height * width - max(0, shift)
        wrapped = None
        if shift:  # the columns whose source lies outside x along the last axis
            wrapped = (*rows_region, slice(width - shift, None) if shift > 0 else slice(0, -shift))
        runs.append((j, (*inner, slice(first + lo, first + hi)), slice(lo + shift, hi + shift), wrapped))
    flat_sizes = (*plan.lead_sizes[:lead - 1], plan.lead_sizes[-1] * width) if lead else (width,)
    source_sizes = (*sizes[:lead - 1], height * width) if lead else (width,)
    return _WholeRows(tuple(zero_slabs), flat_sizes, source_sizes, tuple(runs))


def _copy_shifted_runs(x: np.ndarray, rows: np.ndarray, recipe: _WholeRows) -> None:
    """``copy_rows`` where ``_whole_row_recipe`` applies: each kernel offset's copy is one long run per
    (sample, channel, leading slab), x's rows shifted by ``j * dilation - pad`` as a whole, and the
    columns that the shift wrapped into the neighbouring row are zeroed after. Fewer, longer copies than
    one row at a time, which matters for small images with many channels (14 x 14 x 512)."""
    n, c = x.shape[:2]
    block = rows[0]  # (N, C, kw, *lead sizes, W)
    for slab in recipe.zero_slabs:
        block[slab] = 0
    source = x.reshape(n, c, *recipe.source_sizes)
    for j, target_run, source_run, wrapped in recipe.runs:
        target = block[:, :, j]
        target.reshape(n, c, *recipe.flat_sizes)[target_run] = source[..., source_run]
        if wrapped is not None:
            target[wrapped] = 0
