"""Shape arithmetic: how long an axis is after a convolution, a pooling or a transposed convolution.

One function, :func:`output_size`, holds the formula for one axis; everything else in the project
(the ops, the API, the playground, the front-end's explanations) asks it rather than re-deriving it.
It returns the size together with the formula, the formula with the user's numbers, and, when the
stride does not divide evenly, what happens to the fraction and what would make it whole.

Conventions are PyTorch's, in the lecture's letters (F the kernel size, S the stride, d the dilation):
``padding`` is ``(before, after)`` per axis, the dilated kernel spans ``d·(F − 1) + 1`` positions, and
for pooling ``ceil_mode`` drops a last window that would start in the right padding.
:func:`volume_output` is the lecture's volume view: W×H×D in, K filters of size F×F×D, W_out×H_out×K out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Literal

from engine.errors import EngineError

Kind = Literal["conv", "pool", "transposed"]
KINDS: tuple[str, ...] = ("conv", "pool", "transposed")

#: numerators up to this get stride suggestions (their divisors are found by trial division up to the square root)
MAX_DIVISOR_SEARCH = 10**10

#: what one step along an axis is called, for the plain-language explanations
_NOUNS = {"W": ("column", "columns"), "H": ("row", "rows"), "D": ("slice", "slices"), "L": ("position", "positions")}


@dataclass(frozen=True)
class Suggestion:
    """One change that makes the division exact: which parameter, its new value, and the size it gives."""

    parameter: str  # "padding", "stride" or "in_size"
    value: Any  # (before, after) for padding, an int otherwise
    text: str
    size: int


@dataclass(frozen=True)
class OutputSize:
    """The output length of one axis and how it came about.

    ``fraction`` is ``(numerator, stride)`` of the division inside the floor/ceil (``None`` for a
    transposed convolution, which has no division). ``explanation`` is empty when ``exact``.
    """

    size: int
    formula: str
    worked: str
    exact: bool
    fraction: tuple[int, int] | None
    explanation: str = ""
    suggestions: tuple[Suggestion, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise EngineError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise EngineError(f"{name} must be at least {minimum}, got {value}")
    return value


def _padding_pair(padding: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(padding, int) and not isinstance(padding, bool):
        pair = (padding, padding)
    elif isinstance(padding, Sequence) and not isinstance(padding, str) and len(padding) == 2:
        pair = (padding[0], padding[1])
    else:
        raise EngineError(f"padding must be an int (both sides) or a [before, after] pair, got {padding!r}")
    _check_int("padding before", pair[0], 0)
    _check_int("padding after", pair[1], 0)
    return pair


def _decimal(value: Fraction) -> str:
    """``27/2`` -> ``13.5``; ``10/3`` -> ``3.33…``; integers without a point."""
    if value.denominator == 1:
        return str(value.numerator)
    if abs(value) >= 10**15:  # beyond float's exact integers (and, far beyond, its range)
        return f"{math.floor(value)}.…"
    rounded = round(float(value), 3)
    if Fraction(rounded).limit_denominator(1000) == value:
        return f"{rounded:g}"
    return f"{float(value):.2f}…"


def _plural(n: int, nouns: tuple[str, str]) -> str:
    return f"{n} {nouns[0] if n == 1 else nouns[1]}"


def output_length(
    in_size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0), dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """The bare convolution/pooling formula for one axis: no checks, no words (for hot paths).

    ``⌊(in + before + after − dilation·(kernel − 1) − 1) / stride⌋ + 1``, or with ``ceil_mode``
    ``⌈…⌉ + 1`` minus one if the last window would start at or past ``in + before`` (PyTorch).
    Zero or less when the kernel does not fit; :func:`output_size` checks and explains.
    """
    numerator = in_size + padding[0] + padding[1] - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return numerator // stride + 1
    size = -(-numerator // stride) + 1
    if (size - 1) * stride >= in_size + padding[0]:  # the last window must start inside the input or left pad
        size -= 1
    return size


def transposed_output_length(
    in_size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0), dilation: int = 1,
    output_padding: int = 0,
) -> int:
    """The bare transposed-convolution formula for one axis (no checks):
    ``(in − 1)·stride − before − after + dilation·(kernel − 1) + output_padding + 1``."""
    return (in_size - 1) * stride - padding[0] - padding[1] + dilation * (kernel - 1) + output_padding + 1


def output_size(
    in_size: int,
    kernel: int,
    stride: int = 1,
    padding: int | Sequence[int] = (0, 0),
    dilation: int = 1,
    kind: Kind = "conv",
    ceil_mode: bool = False,
    output_padding: int = 0,
    axis: str = "W",
) -> OutputSize:
    """Output length of one axis for a convolution, pooling or transposed convolution.

    Convolution and pooling (PyTorch's ``Conv2d``/``MaxPool2d`` shape formula, per side padding)::

        out = ⌊(W − d·(F − 1) − 1 + P_before + P_after) / S⌋ + 1

    with ``⌈ ⌉`` instead of ``⌊ ⌋`` for pooling with ``ceil_mode``, minus one if that last window
    would start in the right padding. Transposed convolution::

        out = (W − 1)·S − P_before − P_after + d·(F − 1) + output_padding + 1

    ``axis`` ("W", "H", "D" or "L") only names the axis in the formula and the explanation.
    Raises EngineError (with advice) when the kernel does not fit or an argument is out of range.
    """
    if kind not in KINDS:
        raise EngineError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    in_size = _check_int("input size", in_size, 1)
    kernel = _check_int("kernel size", kernel, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    output_padding = _check_int("output_padding", output_padding, 0)
    pad_before, pad_after = _padding_pair(padding)
    if ceil_mode and kind != "pool":
        raise EngineError("ceil_mode applies to pooling only: use kind 'pool', or leave ceil_mode off")
    if output_padding and kind != "transposed":
        raise EngineError("output_padding applies to transposed convolutions only: use kind 'transposed', or 0")
    symbol = axis if axis in _NOUNS else "W"
    if kind == "transposed":
        return _transposed(in_size, kernel, stride, pad_before, pad_after, dilation, output_padding, symbol)
    return _sliding(in_size, kernel, stride, pad_before, pad_after, dilation, kind, ceil_mode, symbol)


def _sliding(
    W: int, K: int, S: int, pb: int, pa: int, D: int, kind: str, ceil_mode: bool, symbol: str
) -> OutputSize:
    span = D * (K - 1) + 1
    padded = W + pb + pa
    nouns = _NOUNS[symbol]
    if span > padded:
        need = span - W
        raise EngineError(
            f"kernel spans {span}{f' ({D}·({K} − 1) + 1 with dilation {D})' if D > 1 else ''} but the padded input "
            f"is {padded} ({W} + {pb} + {pa}): the output would be empty. Use an input of at least {span - pb - pa}, "
            f"padding of at least {need} in total (e.g. {-(-need // 2)} on each side), or a smaller kernel"
            f"{' or dilation' if D > 1 else ''}"
        )
    numerator = padded - span
    value = Fraction(numerator, S)
    exact = numerator % S == 0
    size = output_length(W, K, S, (pb, pa), D, ceil_mode)

    lo, hi = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    formula = f"{lo}({symbol} − d·(F − 1) − 1 + P_before + P_after) / S{hi} + 1"
    worked = f"{lo}({W} − {D}·({K} − 1) − 1 + {pb} + {pa}) / {S}{hi} + 1 = {lo}{numerator} / {S}{hi} + 1 = "
    rounded = -(-numerator // S) if ceil_mode else numerator // S
    worked += f"{rounded} + 1" if exact else f"{lo}{_decimal(value)}{hi} + 1"
    notes: list[str] = []
    if ceil_mode:
        formula += f", minus 1 if the last window would start at or past {symbol} + P_before"
        if size != rounded + 1:
            start = rounded * S
            worked += (f" − 1 = {size} (the last window would start at padded position {start} ≥ "
                       f"{W} + {pb} = {W + pb}, in the right padding, so it is dropped)")
        else:
            worked += f" = {size}"
    else:
        worked += f" = {size}"
    if kind == "pool" and max(pb, pa) > K // 2:
        notes.append(f"PyTorch's pooling requires padding ≤ kernel_size / 2 = {K // 2} per side; "
                     f"padding {max(pb, pa)} would be refused there")

    explanation = ""
    suggestions: tuple[Suggestion, ...] = ()
    if not exact:
        remainder = numerator % S
        total_pad = pb + pa
        real = max(remainder - pa, 0)
        pad_part = remainder - real
        head = (f"stride {S} does not divide {W} − {span} + {total_pad} = {numerator}: "
                f"the output would be {_decimal(value + 1)} positions; ")
        if not ceil_mode:
            if real:
                lost = f"so the last {_plural(real, nouns)} of the input {'is' if real == 1 else 'are'} never read"
                if pad_part:
                    lost += f" (and {pad_part} of padding)"
            else:
                lost = (f"the last {_plural(pad_part, nouns)} skipped {'is' if pad_part == 1 else 'are'} padding, "
                        "so no input is lost")
            explanation = head + "floor drops the last partial window, " + lost
        elif size == rounded + 1:
            over = S - remainder
            explanation = head + (
                f"ceil_mode keeps the last partial window, which runs {over} past the end of the padded input "
                "(those positions are ignored: max pooling skips them, average pooling leaves them out of the divisor)"
            )
        else:
            explanation = head + (
                "ceil_mode would keep a last partial window, but it would start in the right padding, "
                "so PyTorch drops it and the result equals floor's"
            )
        suggestions = tuple(_suggestions(W, K, S, pb, pa, D, ceil_mode, span, numerator, nouns))
    return OutputSize(size, formula, worked, exact, (numerator, S), explanation, suggestions, tuple(notes))


def _suggestions(
    W: int, K: int, S: int, pb: int, pa: int, D: int, ceil_mode: bool, span: int, numerator: int,
    nouns: tuple[str, str],
) -> list[Suggestion]:
    """Paddings, strides and input sizes that make ``(W + P − span) / S`` whole."""
    remainder = numerator % S
    add = S - remainder
    total = pb + pa
    out: list[Suggestion] = []

    def size_of(w: int, s: int, b: int, a: int) -> int:
        return output_length(w, K, s, (b, a), D, ceil_mode)

    out.append(Suggestion("padding", (pb, pa + add),
                          f"padding {add} more on one side, e.g. [{pb}, {pa + add}] (total {total + add})",
                          size_of(W, S, pb, pa + add)))
    if remainder <= pa:
        out.append(Suggestion("padding", (pb, pa - remainder),
                              f"padding {remainder} less after: [{pb}, {pa - remainder}] (total {total - remainder})",
                              size_of(W, S, pb, pa - remainder)))
    t = _symmetric_total(numerator - total, S, total)
    if t is not None:
        out.append(Suggestion("padding", (t // 2, t // 2), f"padding {t // 2} on each side (total {t})",
                              size_of(W, S, t // 2, t // 2)))
    if numerator <= MAX_DIVISOR_SEARCH:  # trial division costs sqrt(numerator) steps: bounded work per request
        small = [s for s in range(1, math.isqrt(numerator) + 1) if numerator % s == 0]
        divisors = sorted({*small, *(numerator // s for s in small)})
        below = [s for s in divisors if s < S]
        above = [s for s in divisors if s > S]
        for s in ([below[-1]] if below else []) + ([above[0]] if above else []):
            out.append(Suggestion("stride", s, f"stride {s} (divides {numerator})", size_of(W, s, pb, pa)))
    if numerator - remainder >= 0 and W - remainder >= 1:
        out.append(Suggestion("in_size", W - remainder,
                              f"an input of {W - remainder} ({_plural(remainder, nouns)} fewer)",
                              size_of(W - remainder, S, pb, pa)))
    out.append(Suggestion("in_size", W + add, f"an input of {W + add} ({_plural(add, nouns)} more)",
                          size_of(W + add, S, pb, pa)))
    return out


def _symmetric_total(base: int, S: int, total: int) -> int | None:
    """The smallest even total padding ``t > total`` with ``(base + t) % S == 0``, or None if there is none.

    ``t`` must be ``≡ −base (mod S)``: the first such ``t`` above ``total`` is found directly, and if it is
    odd, the next one (``+ S``) is even exactly when ``S`` is odd. Constant work, whatever the numbers.
    """
    first = total + 1 + (-base - total - 1) % S
    if first % 2 == 0:
        return first
    return first + S if S % 2 == 1 else None


def _transposed(W: int, K: int, S: int, pb: int, pa: int, D: int, op: int, symbol: str) -> OutputSize:
    if op >= max(S, D):
        raise EngineError(f"output_padding must be smaller than the stride or the dilation (here < {max(S, D)}), "
                          f"got {op}: it picks one of the {max(S, D)} sizes that map to the same input")
    span = D * (K - 1) + 1
    size = transposed_output_length(W, K, S, (pb, pa), D, op)
    if size < 1:
        raise EngineError(f"padding {pb} + {pa} crops more than the transposed convolution produces "
                          f"({(W - 1) * S + span + op}): the output would be empty. Use less padding "
                          f"(at most {(W - 1) * S + span + op - 1} in total) or a larger kernel or stride")
    formula = f"({symbol} − 1)·S − P_before − P_after + d·(F − 1) + output_padding + 1"
    worked = f"({W} − 1)·{S} − {pb} − {pa} + {D}·({K} − 1) + {op} + 1 = {size}"
    notes: tuple[str, ...] = ()
    if S > 1:
        first = size - op
        notes = (f"a convolution with the same kernel, stride, padding and dilation maps every input length from "
                 f"{first} to {first + S - 1} to the same {W}; output_padding (0 to {S - 1}) picks which of them "
                 f"this transposed convolution produces",)
    return OutputSize(size, formula, worked, True, None, "", (), notes)


@dataclass(frozen=True)
class VolumeOutput:
    """The lecture's volume view of one convolutional layer.

    ``in_shape`` and ``out_shape`` are (W, H, D) / (W_out, H_out, K) as in the lecture, or
    (W, H, D, C) / (W_out, H_out, D_out, K) for a true 3D convolution (``depth_kernel`` given).
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    filter_shape: tuple[int, ...]
    num_filters: int
    weights: int
    biases: int
    params: int
    macs: int
    axes: dict[str, OutputSize]
    explanation: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def volume_output(
    width: int,
    height: int,
    depth: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    num_filters: int = 1,
    dilation: int = 1,
    bias: bool = True,
    depth_kernel: int | None = None,
    depth_stride: int = 1,
    depth_padding: int = 0,
    channels: int = 1,
) -> VolumeOutput:
    """A W×H×D volume through K filters of size F×F×D (the lecture's view): W_out × H_out × K.

    Each filter spans the whole depth D, so it yields one 2D map and K filters stack K maps;
    the layer has (F·F·D + 1)·K parameters (without bias: F·F·D·K).

    With ``depth_kernel`` the depth axis is slid too (a true 3D convolution, PyTorch's Conv3d over
    an input of ``channels`` channels): filters are F×F×F_d×C, the output W_out × H_out × D_out × K
    and the parameters (F·F·F_d·C + 1)·K.
    """
    num_filters = _check_int("number of filters K", num_filters, 1)
    w = output_size(width, kernel, stride, padding, dilation, axis="W")
    h = output_size(height, kernel, stride, padding, dilation, axis="H")
    axes = {"W": w, "H": h}
    lines = [f"width: {w.worked}", f"height: {h.worked}"]
    if depth_kernel is None:
        depth = _check_int("depth D", depth, 1)
        in_shape: tuple[int, ...] = (width, height, depth)
        filter_shape: tuple[int, ...] = (kernel, kernel, depth)
        out_shape: tuple[int, ...] = (w.size, h.size, num_filters)
        per_filter = kernel * kernel * depth
        positions = w.size * h.size
        lines.insert(0, f"each of the {num_filters} filters is {kernel}×{kernel}×{depth}: it spans the whole depth "
                        f"{depth} of the {width}×{height}×{depth} input, so each filter gives one "
                        f"{w.size}×{h.size} map, and {num_filters} filters give depth {num_filters}")
    else:
        channels = _check_int("channels C", channels, 1)
        d = output_size(depth, depth_kernel, depth_stride, depth_padding, dilation, axis="D")
        axes["D"] = d
        lines.append(f"depth: {d.worked}")
        in_shape = (width, height, depth, channels)
        filter_shape = (kernel, kernel, depth_kernel, channels)
        out_shape = (w.size, h.size, d.size, num_filters)
        per_filter = kernel * kernel * depth_kernel * channels
        positions = w.size * h.size * d.size
        lines.insert(0, f"each of the {num_filters} filters is {kernel}×{kernel}×{depth_kernel}×{channels}: it slides "
                        f"along depth too, so each filter gives one {w.size}×{h.size}×{d.size} volume")
    weights = per_filter * num_filters
    biases = num_filters if bias else 0
    dims = "·".join(str(v) for v in filter_shape)
    if bias:
        lines.append(f"parameters: ({dims} + 1)·{num_filters} = {per_filter + 1}·{num_filters} = {weights + biases}")
    else:
        lines.append(f"parameters: {dims}·{num_filters} = {weights} (no bias)")
    macs = per_filter * positions * num_filters
    lines.append(f"multiply-accumulates: {per_filter} per output value × {positions * num_filters} values = {macs}")
    return VolumeOutput(in_shape, out_shape, filter_shape, num_filters, weights, biases, weights + biases, macs,
                        axes, lines)
