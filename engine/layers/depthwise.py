"""Depthwise convolution (one input channel per output channel), fast: matrix products over row copies.

A depthwise convolution does few multiply-adds per byte, so its speed is set by how memory is walked;
short, strided image rows make NumPy slow. Here every matrix product reads long contiguous runs:

* along the **last** spatial axis, the input is copied once per kernel offset ``j`` (``kw`` copies,
  "shifted rows"): ``rows[j][..., w] = x[..., j * dilation + w * stride]`` for every output column ``w``,
  so a row of the copy is exactly an output row long;
* along the **leading** axes, the copies are split by stride phase (``p::stride``) and flattened, so
  that kernel offset ``i`` reads one contiguous run of ``positions`` values starting at
  ``(i * dilation // stride) * row_stride`` of phase ``(i * dilation) % stride``. In 3D the middle axis
  is "wide": the output is computed on phase-long rows and the extra ones are cut off at the end.

Then for every leading kernel offset ``i``, each channel does ``(1, kw) @ (kw, positions)`` (all channels
in one batched matrix product), and these ``kh`` (``kd * kh``) products are summed. The weight gradient is
``(kw, positions) @ (positions, 1)`` per offset. The input gradient is, per stride phase of the input,
a stride-1 correlation of the zero-padded ``dout`` with that phase's kernel offsets flipped: the forward
path again (``depthwise_input_grad``).

The work runs in blocks of (sample, channel) rows whose copies fit in cache (``BLOCK_BYTES``): a batch of
16 at 224 x 224 would otherwise walk copies of hundreds of MB once per leading kernel offset. Blocks can be
spread over threads (``engine.layers.threads``, opt-in).

Shapes: x: (N, C, *S), taps: (C, prod(k)) (row-major kernel offsets), out: (N, C, *out). Padding is
applied while copying (``pads``), never as a separate padded array. ``engine.layers.conv`` repeats the
input channels first when there are several output channels per input channel.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.layers.strided_copy import copy_columns
from engine.layers.threads import run_parts

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


# --- blocks of rows -------------------------------------------------------------------------------
#: bytes of copies and output one block of (sample, channel) rows works on: about two cores' L2
#: cache, so that the kh (kd * kh) products re-read the copies from cache rather than from memory
BLOCK_BYTES = 2 * 1024 * 1024


def _block_rows(plan: DepthwisePlan, itemsize: int) -> int:
    """How many (sample, channel) rows one block takes: its copies and wide output fit ``BLOCK_BYTES``."""
    per_row = (len(plan.starts) * plan.kernel[-1] * plan.flat_size + plan.length) * itemsize
    return max(1, BLOCK_BYTES // per_row)


def _in_blocks(plan: DepthwisePlan, rows: int, itemsize: int, work) -> None:
    """Call ``work(begin, end)`` on consecutive blocks of ``range(rows)``, the blocks spread over threads."""
    size = _block_rows(plan, itemsize)
    if size >= rows:  # one block: no parts to spread
        work(0, rows)
        return

    def part(begin: int, end: int) -> None:
        for first in range(begin, end, size):
            work(first, min(end, first + size))

    run_parts(part, rows, min_part=max(1, size // 4))  # a thread's part: at least a quarter of a block


def _as_rows(x: np.ndarray) -> np.ndarray:
    """x: (N, C, *S) -> (1, N * C, *S): one (sample, channel) row per "channel" (a view when contiguous)."""
    return x.reshape(1, x.shape[0] * x.shape[1], *x.shape[2:])


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
    (``engine.layers.strided_copy``).
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


def to_wide(y: np.ndarray, plan: DepthwisePlan) -> np.ndarray:
    """y: (N, C, *out) -> (N * C, wide length), zeros in the wide grid's extra rows."""
    n, c = y.shape[:2]
    if plan.wide_shape == plan.out_sizes:
        return np.ascontiguousarray(y).reshape(n * c, plan.length)
    wide = np.zeros((n, c, *plan.wide_shape), dtype=y.dtype)
    wide[(slice(None), slice(None), *(slice(0, m) for m in y.shape[2:]))] = y
    return wide.reshape(n * c, plan.length)


def from_wide(wide: np.ndarray, plan: DepthwisePlan, n: int, c: int) -> np.ndarray:
    """(N * C, wide length) -> (N, C, *out), contiguous."""
    grid = wide.reshape(n, c, *plan.wide_shape)
    if plan.wide_shape == plan.out_sizes:
        return grid
    return np.ascontiguousarray(grid[(slice(None), slice(None), *(slice(0, m) for m in plan.out_sizes))])


def _row_weights(taps: np.ndarray, n: int, plan: DepthwisePlan, dtype: np.dtype) -> np.ndarray:
    """taps: (C, prod(k)) -> (N * C, leading offsets, kw): every (sample, channel) row's weights."""
    taps = taps.astype(dtype, copy=False)
    per_row = taps if n == 1 else np.tile(taps, (n, 1))
    return per_row.reshape(per_row.shape[0], len(plan.reads), plan.kernel[-1])


def depthwise_forward(
    x: np.ndarray, taps: np.ndarray, plan: DepthwisePlan, pads: Pads | None = None, bias: np.ndarray | None = None
) -> np.ndarray:
    """x: (N, C, *S) (padded by ``pads``), taps: (C, prod(k)), bias: (C,) or None -> out: (N, C, *out).

    Runs block by block of (sample, channel) rows (``BLOCK_BYTES``), the blocks spread over threads.
    """
    n, c = x.shape[:2]
    rows_in = _as_rows(x)
    weights = _row_weights(taps, n, plan, x.dtype)
    row_bias = None if bias is None else np.tile(bias.astype(x.dtype, copy=False), n).reshape(n * c, 1, 1)
    out = np.empty((n * c, 1, plan.length), dtype=x.dtype)

    def block(begin: int, end: int) -> None:
        rows = copy_rows(rows_in[:, begin:end], plan, pads)
        acc = out[begin:end]
        tmp = np.empty_like(acc) if len(plan.reads) > 1 else None
        for r, (phase, first) in enumerate(plan.reads):
            view = rows[phase, :, :, first:first + plan.length]  # (rows, kw, positions)
            if r == 0:
                np.matmul(weights[begin:end, :1], view, out=acc)
            else:
                np.matmul(weights[begin:end, r:r + 1], view, out=tmp)
                acc += tmp
        if row_bias is not None:
            acc += row_bias[begin:end]

    _in_blocks(plan, n * c, x.itemsize, block)
    return from_wide(out, plan, n, c)


def depthwise_weight_grad(x: np.ndarray, dout: np.ndarray, plan: DepthwisePlan, pads: Pads | None = None) -> np.ndarray:
    """x: (N, C, *S) (padded by ``pads``), dout: (N, C, *out) -> dtaps: (C, prod(k)), summed over the batch."""
    n, c = x.shape[:2]
    rows_in = _as_rows(x)
    dwide = to_wide(dout, plan)[:, :, None]  # (N * C, positions, 1)
    dtaps = np.empty((n * c, len(plan.reads), plan.kernel[-1]), dtype=np.result_type(x, dout))

    def block(begin: int, end: int) -> None:
        rows = copy_rows(rows_in[:, begin:end], plan, pads)
        for r, (phase, first) in enumerate(plan.reads):
            dtaps[begin:end, r] = np.matmul(rows[phase, :, :, first:first + plan.length], dwide[begin:end])[:, :, 0]

    _in_blocks(plan, n * c, x.itemsize, block)
    return dtaps.reshape(n, c, -1).sum(axis=0)


def depthwise_input_grad(
    dout: np.ndarray, w: np.ndarray, padded_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    """The adjoint of the strided depthwise correlation. dout: (N, C, *out), w: (C, *k) -> dxp: (N, C, *padded).

    Split by stride phase: padded position ``p = o * stride + i * dilation``, so the positions of phase
    ``q = p mod stride`` receive only the kernel offsets ``i`` with ``i * dilation = q (mod stride)``, each
    from ``dout[m - e_i]`` (``p = q + m * stride``, ``e_i = (i * dilation - q) / stride``). Per phase that is
    a stride-1 correlation of the zero-padded dout with those offsets flipped (dilation
    ``dilation / gcd(dilation, stride)``): the fast forward path once per phase, one phase for stride 1.
    """
    n, c = dout.shape[:2]
    axes = [_phases(*a) for a in zip(padded_sizes, dout.shape[2:], w.shape[1:], stride, dilation)]
    dxp = np.empty((n, c, *padded_sizes), dtype=dout.dtype)  # every phase is written below (no zero pass)
    for phases in itertools.product(*axes):
        region = (slice(None), slice(None), *(slice(q, None, s) for (q, *_), s in zip(phases, stride)))
        if any(reach is None for _, _, reach in phases):
            dxp[region] = 0  # no kernel offset lands on this phase
            continue
        offsets = [taps[::-1] for _, taps, _ in phases]
        sub = w[np.ix_(range(c), *offsets)]  # (C, *J): this phase's offsets, flipped
        sizes = [reach[0] for *_, reach in phases]
        plan = plan_depthwise([m + (len(t) - 1) * r[1] for (_, t, r), m in zip(phases, sizes)],
                              [len(t) for t in offsets], [1] * len(sizes), [r[1] for *_, r in phases], sizes)
        crop = (slice(None), slice(None), *(slice(0, r[3]) for *_, r in phases))
        part = depthwise_forward(dout[crop], sub.reshape(c, -1), plan, [r[2] for *_, r in phases])
        if all(s == 1 for s in stride):
            return part
        dxp[region] = part
    return dxp


def _phases(padded: int, out: int, k: int, s: int, d: int) -> list[tuple[int, list[int], tuple | None]]:
    """Per stride phase ``q`` of one axis: the kernel offsets that land on it and how to read dout,
    ``(positions, dilation, (pad before, pad after), dout length read)``, or None when nothing lands there."""
    step = d // math.gcd(d, s)
    phases = []
    for q in range(s):
        positions = len(range(q, padded, s))
        taps = [i for i in range(k) if (i * d) % s == q]
        if not taps or positions == 0:
            phases.append((q, taps, None))
            continue
        last = (taps[-1] * d - q) // s  # e of the last offset: dout is shifted right by it
        after = positions + (len(taps) - 1) * step - last - out
        read = out + min(0, after)  # dout beyond what any position of this phase reaches is never read
        if read <= 0:
            phases.append((q, taps, None))
            continue
        phases.append((q, taps, (positions, step, (last, max(0, after)), read)))
    return phases
