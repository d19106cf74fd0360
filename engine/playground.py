"""The sliding-window playground: a small convolution or pooling worked out one window at a time.

For a grid typed by the user (up to 32×32) the functions here return the output and every step
of the sliding window: where the window sits in the (padded) input, the values under it, the
element-wise products and their sum (convolution), the bias, the maximum and where it was (max
pooling) or the divisor (average pooling), and the result. The front-end animates these steps.

Conventions are PyTorch's: cross-correlation, padding ``(before, after)`` per axis (every form of
``engine.padding``), dilation, ``ceil_mode`` and ``count_include_pad`` for pooling. The output
sizes come from ``engine.arithmetic.output_size``; the results equal ``engine.layers``' (tested).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from engine.arithmetic import OutputSize, output_size
from engine.errors import EngineError
from engine.padding import normalize_padding, per_axis

MAX_SIDE = 32  # largest input height or width
MAX_CHANNELS = 16
MAX_STEPS = 4096  # window positions
MAX_WINDOW_VALUES = 1 << 17  # values listed over all steps (bounds the response)


@dataclass(frozen=True)
class Step:
    """One position of the sliding window.

    ``rows``/``cols`` are the padded-input coordinates the taps read (``origin`` is the first of
    each); padded row ``r`` is input row ``r − padding[0][0]``. ``values`` is (kh, kw), or
    (C, kh, kw) for a multi-channel convolution; ``None`` marks taps that read nothing (max
    pooling's padding, or a ``ceil_mode`` window running past the padded input).
    """

    out: tuple[int, int]
    origin: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    values: list
    products: list | None  # convolution: values × kernel
    sum: float | None  # convolution: sum of products; average pooling: sum of values
    bias: float | None  # convolution
    divisor: int | None  # average pooling
    argmax: tuple[int, int] | None  # max pooling: padded-input (row, col) of the first maximum
    result: float


@dataclass(frozen=True)
class Playground:
    """A worked sliding-window operation: its settings, the output and every step."""

    op: Literal["conv", "max_pool", "avg_pool"]
    input: list
    padded_input: list  # None where max pooling pads (with −∞)
    padding: tuple[tuple[int, int], tuple[int, int]]
    kernel_size: tuple[int, int]
    kernel: list | None  # convolution weights
    stride: tuple[int, int]
    dilation: tuple[int, int]
    output: list
    output_size: tuple[OutputSize, OutputSize]
    steps: list[Step]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: |values| of the input and kernel: products and sums of up to 16 × 32 × 32 of them stay finite in float64
MAX_ABS_VALUE = 1e150


def _grid(value: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EngineError(f"{name} must be a grid of numbers (a list of equally long rows)") from None
    except OverflowError:  # an integer beyond float64's range (about 1.8e308)
        raise EngineError(f"{name} contains a number too large to compute with: keep values within "
                          f"±{MAX_ABS_VALUE:g}") from None
    if array.ndim not in ndims:
        shapes = " or ".join({2: "(H, W)", 3: "(C, H, W)"}.get(n, str(n)) for n in ndims)
        raise EngineError(f"{name} must have shape {shapes}, got {list(array.shape)}")
    if array.size == 0:
        raise EngineError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise EngineError(f"{name} contains a value that is not a finite number (NaN or infinity)")
    if np.abs(array).max() > MAX_ABS_VALUE:
        raise EngineError(f"{name} contains {np.abs(array).max():g}: keep values within ±{MAX_ABS_VALUE:g}, so that "
                          "products and sums stay finite numbers")
    return array


def _settings(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any):
    h, w = x.shape[-2:]
    if h > MAX_SIDE or w > MAX_SIDE:
        raise EngineError(f"the playground takes grids up to {MAX_SIDE}×{MAX_SIDE}, got {h}×{w}: use a smaller grid")
    kernel = per_axis(kernel_size, 2, "kernel_size")
    strides = per_axis(stride, 2, "stride")
    dilations = per_axis(dilation, 2, "dilation")
    pads = normalize_padding(padding, 2, kernel, strides, dilations, (h, w))
    return kernel, strides, dilations, pads


def _check_work(n_steps: int, window_values: int) -> None:
    if n_steps > MAX_STEPS:
        raise EngineError(f"this would take {n_steps} window positions; the playground shows at most {MAX_STEPS}: "
                          "use a smaller grid or a larger stride")
    if n_steps * window_values > MAX_WINDOW_VALUES:
        raise EngineError(f"this would list {n_steps * window_values} values under the window; the playground lists "
                          f"at most {MAX_WINDOW_VALUES}: use a smaller kernel, fewer channels or a larger stride")


def _taps(i: int, j: int, kernel, strides, dilations) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rows = tuple(i * strides[0] + a * dilations[0] for a in range(kernel[0]))
    cols = tuple(j * strides[1] + b * dilations[1] for b in range(kernel[1]))
    return rows, cols


def _nested(array: np.ndarray, mask: np.ndarray | None = None) -> list:
    """A float grid as nested lists of Python floats, ``None`` where ``mask`` is False."""
    values = array.astype(object)
    if mask is not None:
        values[~mask] = None
    return _as_lists(values)


def _as_lists(values: np.ndarray) -> list:
    if values.ndim == 1:
        return [None if v is None else float(v) for v in values]
    return [_as_lists(v) for v in values]


def conv_steps(
    x: Any,
    kernel: Any,
    bias: float = 0.0,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Playground:
    """A 2D convolution (cross-correlation) worked out window by window.

    Inputs:
      x: (H, W), or (C, H, W) for a volume (up to 32×32, 16 channels)
      kernel: (kh, kw), or (C, kh, kw) with the input's C: one filter, so the output is one map
      bias: added to every window's sum
      stride, dilation: an int or [sh, sw]; padding: any form of ``engine.padding``
    Returns:
      a Playground with output (H_out, W_out),
      H_out = ⌊(H + P_top + P_bottom − d·(kh − 1) − 1) / s⌋ + 1 (likewise W_out)
    """
    x = _grid(x, "the input", (2, 3))
    w = _grid(kernel, "the kernel", (2, 3))
    if not isinstance(bias, int | float) or isinstance(bias, bool) or (isinstance(bias, float)
                                                                        and not math.isfinite(bias)):
        raise EngineError(f"bias must be a finite number, got {bias!r}")
    if abs(bias) > MAX_ABS_VALUE:
        raise EngineError(f"bias is beyond ±{MAX_ABS_VALUE:g}: keep it within, so that the sums stay finite numbers")
    if x.ndim == 2:
        x3 = x[None]
    else:
        x3 = x
        if x.shape[0] > MAX_CHANNELS:
            raise EngineError(f"the playground takes up to {MAX_CHANNELS} channels, got {x.shape[0]}")
    w3 = w[None] if w.ndim == 2 else w
    if w3.shape[0] != x3.shape[0]:
        raise EngineError(f"the kernel has {w3.shape[0]} channel(s) but the input has {x3.shape[0]}: a filter spans "
                          f"the whole depth, so give a kernel of shape ({x3.shape[0]}, kh, kw)")
    ksize = tuple(w3.shape[1:])
    kernel_size, strides, dilations, pads = _settings(x3, list(ksize), stride, padding, dilation)
    sizes = tuple(output_size(n, k, s, p, d, kind="conv", axis=name)
                  for n, k, s, p, d, name in zip(x3.shape[1:], kernel_size, strides, pads, dilations, "HW"))
    out_h, out_w = sizes[0].size, sizes[1].size
    _check_work(out_h * out_w, w3.size)
    xp = np.pad(x3, ((0, 0), *pads))
    squeeze = x.ndim == 2
    out = np.zeros((out_h, out_w))
    steps = []
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = _taps(i, j, kernel_size, strides, dilations)
            window = xp[:, rows][:, :, cols]
            products = window * w3
            total = float(products.sum())
            out[i, j] = total + bias
            steps.append(Step(
                out=(i, j), origin=(rows[0], cols[0]), rows=rows, cols=cols,
                values=_nested(window[0] if squeeze else window),
                products=_nested(products[0] if squeeze else products),
                sum=total, bias=float(bias), divisor=None, argmax=None, result=float(out[i, j]),
            ))
    return Playground(
        op="conv", input=_nested(x), padded_input=_nested(xp[0] if squeeze else xp), padding=pads,
        kernel_size=kernel_size, kernel=_nested(w), stride=strides, dilation=dilations, output=_nested(out),
        output_size=sizes, steps=steps,
    )


def pool_steps(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    kind: Literal["max", "avg"] = "max",
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Playground:
    """Max or average pooling of one (H, W) grid, worked out window by window.

    ``stride`` defaults to ``kernel_size`` (PyTorch). Max pooling pads with −∞ and reports the first
    maximum (row-major, as PyTorch); average pooling pads with zeros and divides by the window
    clipped to the padded input (``count_include_pad``) or to the input. As in PyTorch, padding is
    at most half the kernel and average pooling has no dilation.
    """
    if kind not in ("max", "avg"):
        raise EngineError(f"kind must be 'max' or 'avg', got {kind!r}")
    x = _grid(x, "the input", (2,))
    kernel_size, strides, dilations, pads = _settings(x, kernel_size, kernel_size if stride is None else stride,
                                                      padding, dilation)
    if kind == "avg" and dilations != (1, 1):
        raise EngineError("average pooling has no dilation (as in PyTorch): use dilation 1, or max pooling")
    for k, (before, after), name in zip(kernel_size, pads, ("height", "width")):
        if max(before, after) > k // 2:
            raise EngineError(f"padding {max(before, after)} along the {name} is more than half the kernel ({k} // 2 "
                              f"= {k // 2}): some windows would hold only padding. Use padding of at most {k // 2}")
    sizes = tuple(output_size(n, k, s, p, d, kind="pool", ceil_mode=ceil_mode, axis=name)
                  for n, k, s, p, d, name in zip(x.shape, kernel_size, strides, pads, dilations, "HW"))
    out_h, out_w = sizes[0].size, sizes[1].size
    _check_work(out_h * out_w, kernel_size[0] * kernel_size[1])
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, pads, constant_values=fill)
    (top, _), (left, _) = pads
    out = np.zeros((out_h, out_w))
    steps = []
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = _taps(i, j, kernel_size, strides, dilations)
            inside = np.array([[r < xp.shape[0] and c < xp.shape[1] for c in cols] for r in rows])
            window = np.array([[xp[r, c] if r < xp.shape[0] and c < xp.shape[1] else fill for c in cols]
                               for r in rows])
            if kind == "max":
                flat = int(np.argmax(window))  # the first maximum, row-major
                a, b = divmod(flat, kernel_size[1])
                result = float(window[a, b])
                if not math.isfinite(result):
                    raise EngineError(f"the window at output ({i}, {j}) holds only padding: use less padding")
                read = inside & np.isfinite(window)
                steps.append(Step(out=(i, j), origin=(rows[0], cols[0]), rows=rows, cols=cols,
                                  values=_nested(window, read), products=None, sum=None, bias=None, divisor=None,
                                  argmax=(rows[a], cols[b]), result=result))
            else:
                divisor = 1
                for start, k, n, (_, after) in ((rows[0] - top, kernel_size[0], x.shape[0], pads[0]),
                                                     (cols[0] - left, kernel_size[1], x.shape[1], pads[1])):
                    end = min(start + k, n + after)
                    divisor *= end - start if count_include_pad else min(end, n) - max(start, 0)
                total = float(window.sum())
                result = total / divisor
                steps.append(Step(out=(i, j), origin=(rows[0], cols[0]), rows=rows, cols=cols,
                                  values=_nested(window, inside), products=None, sum=total, bias=None,
                                  divisor=divisor, argmax=None, result=result))
            out[i, j] = result
    return Playground(
        op=f"{kind}_pool", input=_nested(x), padded_input=_nested(xp, np.isfinite(xp)), padding=pads,
        kernel_size=kernel_size, kernel=None, stride=strides, dilation=dilations, output=_nested(out),
        output_size=sizes, steps=steps,
    )
