"""Depthwise convolution (``groups == C``: one input channel per group), fast: matrix products over row copies.

A depthwise convolution does few multiply-adds per byte, so its speed is set by how memory is walked;
short, strided image rows make NumPy slow. Here every matrix product reads long contiguous runs of the
shifted row copies that ``engine.layers.fast.depthwise_copies`` makes (its docstring says how they are laid
out): for every leading kernel offset ``i``, each channel does ``(1, kw) @ (kw, positions)`` (all channels
in one batched matrix product), and these ``kh`` (``kd * kh``) products are summed. The weight gradient is
``(kw, positions) @ (positions, 1)`` per offset. The input gradient is, per stride phase of the input,
a stride-1 correlation of the zero-padded ``dout`` with that phase's kernel offsets flipped: the forward
path again (``depthwise_input_grad``).

The work runs in blocks of (sample, channel) rows whose copies fit in cache (``BLOCK_BYTES``): a batch of
16 at 224 x 224 would otherwise walk copies of hundreds of MB once per leading kernel offset. Blocks can be
spread over threads (``engine.layers.fast.threads``, opt-in).

Measured (the commits that brought them): blocks, batch 16 forward 8x faster per input (faf03b1); the input
gradient by stride phases, 2-4x faster at stride 2 than adding outer products back onto row copies
(49245be); 2 MB blocks measured best inside the network (736a917). MobileNet-style 224 x 224, batch 1, one
thread: the engine within 1.20x PyTorch's forward time (README, "Benchmarks").

Shapes: x: (N, C, *S), taps: (C, prod(k)) (row-major kernel offsets), out: (N, C, *out). Padding is
applied while copying (``pads``), never as a separate padded array. ``forward``, ``input_grad`` and
``weight_grad`` take the convolution's weights ``w: (K, 1, *k)`` and repeat the input channels first when
there are several output channels per input channel (``K = multiplier * C``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from engine.layers.fast.depthwise_copies import DepthwisePlan, copy_rows, plan_depthwise
from engine.layers.fast.threads import run_parts

Pads = Sequence[tuple[int, int]]


def is_depthwise(c_in: int, groups: int) -> bool:
    """Whether a convolution of ``c_in`` input channels in ``groups`` groups is depthwise: one input channel
    per group (and more than one group). The one test every part of the engine uses."""
    return groups > 1 and groups == c_in


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


# --- the convolution's depthwise path (w: (K, 1, *k), K = multiplier * C) -------------------------------
def _no_pads(pads: Pads | None, spatial: int) -> Pads:
    return pads if pads is not None else ((0, 0),) * spatial


def forward(
    x: np.ndarray,
    w: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    out_sizes: Sequence[int],
    pads: Pads | None = None,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """Depthwise convolution (+ bias) of x: (N, C, *S) padded by ``pads`` (None: already padded) -> (N, K, *out)."""
    k_out, kernel = w.shape[0], w.shape[2:]
    multiplier = k_out // x.shape[1]
    if multiplier > 1:  # output channel k reads input channel k // multiplier
        x = np.repeat(x, multiplier, axis=1)
    pads = _no_pads(pads, len(kernel))
    padded = [n + b + a for n, (b, a) in zip(x.shape[2:], pads)]
    plan = plan_depthwise(padded, kernel, stride, dilation, out_sizes)
    return depthwise_forward(x, w.reshape(k_out, -1), plan, pads, bias)


def input_grad(
    dout: np.ndarray, w: np.ndarray, padded_sizes: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """dout: (N, K, *out), w: (K, 1, *k) -> dxp: (N, C, *padded_sizes), the multiplier's channels summed."""
    n, k_out = dout.shape[:2]
    multiplier = k_out // groups
    dxp = depthwise_input_grad(dout, w.reshape(k_out, *w.shape[2:]), padded_sizes, stride, dilation)
    if multiplier > 1:
        dxp = dxp.reshape(n, groups, multiplier, *padded_sizes).sum(axis=2)
    return dxp


def weight_grad(
    x: np.ndarray,
    dout: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pads: Pads | None = None,
) -> np.ndarray:
    """x: (N, C, *S) padded by ``pads`` (None: already padded), dout: (N, K, *out) -> dw: (K, 1, *kernel)."""
    k_out = dout.shape[1]
    multiplier = k_out // x.shape[1]
    if multiplier > 1:
        x = np.repeat(x, multiplier, axis=1)
    pads = _no_pads(pads, len(kernel))
    padded = [n + b + a for n, (b, a) in zip(x.shape[2:], pads)]
    dw = depthwise_weight_grad(x, dout, plan_depthwise(padded, kernel, stride, dilation, dout.shape[2:]), pads)
    return dw.reshape(k_out, 1, *kernel)
