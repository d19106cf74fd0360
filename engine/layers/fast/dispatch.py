"""Which fast implementation computes a convolution: the one place that decides.

``conv_path`` looks at the shapes and picks one of four modules, each with the same three functions
(``forward``, ``input_grad``, ``weight_grad``) on the same arguments; every convolution, its gradients and
the transposed convolution go through it, so the forward pass and both gradients always agree on the path:

* ``depthwise``: ``groups == C`` (one input channel per group), shifted row copies, no patch matrices;
* ``pointwise``: 1x1 kernel, stride 1, one group: the input is its own patch matrix, one product per sample;
* ``wide``: stride 1, one group, at most ``wide.WIDE_MAX_CHANNELS`` output channels: per-sample patch
  matrices where every kernel offset is one contiguous run of the input;
* ``im2col``: everything else, one matrix product per group over the patch matrices.

Each module's docstring has the measurement that justified it. ``convolve`` and ``weight_grad_of`` add
what a layer needs around the three functions: padding (the depthwise path pads while copying, the others
read a padded copy, which the layer keeps for the weight gradient) and the bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from engine.arithmetic import output_length
from engine.layers.fast import depthwise, im2col, pointwise, wide
from engine.layers.fast.depthwise import is_depthwise
from engine.layers.fast.im2col import pad_input
from engine.layers.fast.pointwise import is_pointwise
from engine.layers.fast.wide import use_wide

Pads = Sequence[tuple[int, int]]

#: the implementations, by the name ``conv_path`` returns
PATHS: dict[str, ModuleType] = {"depthwise": depthwise, "pointwise": pointwise, "wide": wide, "im2col": im2col}


def conv_output_sizes(
    padded_sizes: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[int, ...]:
    """``floor((S_padded - dilation * (k - 1) - 1) / stride) + 1`` per axis (``engine.arithmetic``'s formula)."""
    return tuple(output_length(n, k, s, (0, 0), d) for n, k, s, d in zip(padded_sizes, kernel, stride, dilation))


def conv_path(
    c_in: int, k_out: int, kernel: Sequence[int], groups: int, stride: Sequence[int], padded_sizes: Sequence[int],
    out_sizes: Sequence[int],
) -> str:
    """The name of the implementation (a key of ``PATHS``) for a convolution of these shapes."""
    if is_depthwise(c_in, groups):
        return "depthwise"
    if groups == 1 and is_pointwise(kernel, stride, padded_sizes, out_sizes):
        return "pointwise"
    if use_wide(k_out, groups, stride):
        return "wide"
    return "im2col"


def correlate(xp: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int], groups: int) -> np.ndarray:
    """Convolution without padding or bias. xp: (N, C, *S), w: (K, C/groups, *k) -> (N, K, *out)."""
    out_sizes = conv_output_sizes(xp.shape[2:], w.shape[2:], stride, dilation)
    path = conv_path(xp.shape[1], w.shape[0], w.shape[2:], groups, stride, xp.shape[2:], out_sizes)
    return PATHS[path].forward(xp, w, stride, dilation, groups, out_sizes)


def correlate_input_grad(
    dout: np.ndarray,
    w: np.ndarray,
    padded_sizes: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """d loss / d xp of ``correlate``. dout: (N, K, *out), w: (K, C/groups, *k) -> (N, C, *padded_sizes).

    Output positions beyond ``dout``'s extent are never read (the transposed convolution relies on it).
    """
    c = w.shape[1] * groups
    path = conv_path(c, w.shape[0], w.shape[2:], groups, stride, padded_sizes, dout.shape[2:])
    return PATHS[path].input_grad(dout, w, padded_sizes, stride, dilation, groups)


def correlate_weight_grad(
    xp: np.ndarray, dout: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """d loss / d w of ``correlate``. xp: (N, C, *S) padded, dout: (N, K, *out) -> (K, C/groups, *kernel)."""
    path = conv_path(xp.shape[1], dout.shape[1], kernel, groups, stride, xp.shape[2:], dout.shape[2:])
    return PATHS[path].weight_grad(xp, dout, kernel, stride, dilation, groups)


def convolve(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Sequence[int], padding: Pads,
             dilation: Sequence[int], groups: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Convolution with padding and bias: x: (N, C, *S) -> (out: (N, K, *out), the padded input or None).

    The second value is what ``weight_grad_of`` reads again: the padded copy, or None where the depthwise
    path padded while copying and made no padded copy (its weight gradient pads again the same way).
    """
    padded = [n + before + after for n, (before, after) in zip(x.shape[2:], padding)]
    out_sizes = conv_output_sizes(padded, w.shape[2:], stride, dilation)
    path = conv_path(x.shape[1], w.shape[0], w.shape[2:], groups, stride, padded, out_sizes)
    if path == "depthwise":  # pads while splitting by stride phase, adds the bias in the same pass
        return depthwise.forward(x, w, stride, dilation, groups, out_sizes, pads=padding, bias=b), None
    xp = pad_input(x, padding)
    out = PATHS[path].forward(xp, w, stride, dilation, groups, out_sizes)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * len(stride))
    return out, xp


def weight_grad_of(x: np.ndarray, xp: np.ndarray | None, dout: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                   padding: Pads, dilation: Sequence[int], groups: int) -> np.ndarray:
    """d loss / d w of ``convolve``, from its input ``x`` and the padded input ``xp`` it returned (None: the
    depthwise path, chosen by ``conv_path`` in ``convolve``)."""
    if xp is None:  # depthwise: pads again while splitting by phase
        return depthwise.weight_grad(x, dout, kernel, stride, dilation, groups, pads=padding)
    return correlate_weight_grad(xp, dout, kernel, stride, dilation, groups)
