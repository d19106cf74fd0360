"""Bounding the work of one attention request.

Work is counted in *units*: one forward pass of one input costs 1, a backward pass about 2 more (it
does roughly twice the forward's multiply-accumulates). A request costs ``units x the graph's MACs``.
Methods that need many passes get defaults that fit the budget; options given explicitly that do not
fit are refused with the largest value that would. A method that cannot fit at all is refused with the cheapest
other method that does (of the ``alternatives`` the caller says apply to the model), or, when none does, with the
limit to raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.attention.common import AttributionError, resolve_layer
from engine.attention.occlusion import window_starts
from engine.graph import Graph

#: (option, default, units per step, fixed units)
_MANY_PASS = {
    "smoothgrad": ("samples", 25, 3, 1),
    "integrated_gradients": ("steps", 64, 3, 2),
    "scorecam": ("max_channels", 256, 1, 3),
}
_FIXED = {"saliency": 3, "gradient_x_input": 3, "guided_backprop": 3, "effective_rf": 3, "eigencam": 1,
          "learned_attention": 1}
#: the class activation maps other than Score-CAM, and anything not listed: a forward pass and a backward pass to
#: the layer only
_DEFAULT_UNITS = 2
_MINIMUM_STEPS = {"samples": 1, "steps": 2, "max_channels": 1}


def graph_macs(graph: Graph) -> int:
    """Multiply-accumulates of one forward pass of one input."""
    return sum(node.op.macs() for node in graph.nodes)


def minimum_units(method: str) -> int:
    """The least work ``method`` can do, in units: its fixed passes, a many-pass method with its smallest
    option, occlusion with one window over the whole input."""
    if method in _MANY_PASS:
        name, _, per_step, fixed = _MANY_PASS[method]
        return fixed + per_step * _MINIMUM_STEPS[name]
    if method == "occlusion":
        return 2
    return _FIXED.get(method, _DEFAULT_UNITS)


#: what a many-pass method repeats, in words (occlusion: one occluded copy per window)
_STEP_WORDS = {"smoothgrad": "noisy copy", "integrated_gradients": "path step", "scorecam": "channel",
               "occlusion": "occluded window"}
#: passes in words, by their units: a forward pass is 1, a backward pass 2 more
_PASS_WORDS = {1: "1 forward pass", 2: "1 forward + 1 backward pass to the layer",
               3: "1 forward + 1 backward pass"}


def method_cost(method: str) -> dict[str, Any]:
    """The work one map of ``method`` takes, counted as ``plan`` counts it (``estimated_macs`` is
    ``(units + units_per_step x steps) x`` one forward pass's MACs): ``units`` fixed, ``units_per_step`` for each
    ``step`` (0 and None for a fixed number of passes), ``option`` the request option that sets the number of steps
    and ``default_steps`` its default (Score-CAM: at most the layer's channels; occlusion's windows follow ``window``
    and ``stride``, so null), and ``passes`` in words."""
    if method in _MANY_PASS:
        option, default, per_step, fixed = _MANY_PASS[method]
    elif method == "occlusion":
        option, default, per_step, fixed = None, None, 1, 1
    else:
        units = _FIXED.get(method, _DEFAULT_UNITS)
        return {"units": units, "units_per_step": 0, "step": None, "option": None, "default_steps": None,
                "passes": _PASS_WORDS[units]}
    step = _STEP_WORDS[method]
    return {"units": fixed, "units_per_step": per_step, "step": step, "option": option, "default_steps": default,
            "passes": f"{_PASS_WORDS[per_step]} per {step}"}


def plan(graph: Graph, method: str, options: dict[str, Any], max_macs: int | None, layer: str | None = None,
         alternatives: Sequence[str] = (), limit_name: str = "max_macs") -> dict[str, Any]:
    """``options`` with the many-pass defaults filled in to fit ``max_macs``; raises AttributionError
    when the request cannot fit. ``max_macs=None`` means no bound (defaults as documented).

    Only the work is checked here: whether the method applies to this model at all is
    ``engine.attention.prepare``'s to say, before this. A method that cannot fit names the cheapest of
    ``alternatives`` (the other methods that apply to this model) that does, or says to raise ``limit_name``."""
    options = dict(options)
    per_pass = max(graph_macs(graph), 1)
    budget_units = None if max_macs is None else max_macs / per_pass
    if method in _MANY_PASS:
        name, default, per_step, fixed = _MANY_PASS[method]
        if method == "scorecam":
            channels = graph.by_id[resolve_layer(graph, layer)].output_shape[0]
            default = min(default, channels)
        if budget_units is None:
            options.setdefault(name, default)
            return options
        largest = int((budget_units - fixed) // per_step)
        if largest < _MINIMUM_STEPS[name]:
            raise _refusal(method, per_pass, max_macs, alternatives, limit_name)
        if name not in options:
            options[name] = min(default, largest)
        elif int(options[name]) > largest:
            raise AttributionError(f"{method} with {name}={options[name]} needs about "
                                   f"{(fixed + per_step * int(options[name])) * per_pass / 1e9:.1f} GMACs, more than "
                                   f"this server allows per request ({max_macs / 1e9:.1f}): use {name} <= {largest}")
        return options
    if budget_units is None:
        return options
    if minimum_units(method) > budget_units:
        raise _refusal(method, per_pass, max_macs, alternatives, limit_name)
    units = _FIXED.get(method, _DEFAULT_UNITS)
    if method == "occlusion":
        if "window" not in options and "stride" not in options:
            options.update(_occlusion_defaults(graph, budget_units))
        units = 1 + _occlusion_windows(graph, options)
    if units > budget_units:  # occlusion with a window and stride given: a coarser one fits
        raise AttributionError(f"occlusion with these settings needs {units - 1} occluded copies, more than "
                               f"this server allows per request (about {int(budget_units) - 1}): "
                               "use a larger stride or window, or leave both out: their defaults grow to fit")
    return options


def estimated_macs(graph: Graph, method: str, options: dict[str, Any], layer: str | None = None) -> int:
    """The multiply-accumulates ``method`` will do with ``options`` as ``plan`` returned them (its defaults
    filled in), by the same count of units ``plan`` bounds."""
    per_pass = max(graph_macs(graph), 1)
    if method in _MANY_PASS:
        name, _, per_step, fixed = _MANY_PASS[method]
        if name not in options:
            options = plan(graph, method, options, None, layer)
        return (fixed + per_step * int(options[name])) * per_pass
    if method == "occlusion":
        return (1 + _occlusion_windows(graph, options)) * per_pass
    return _FIXED.get(method, _DEFAULT_UNITS) * per_pass


def occlusion_default(graph: Graph) -> tuple[int, int]:
    """The default window and stride: an eighth and a sixteenth of the input's longest spatial axis."""
    side = max(graph.input_shape[1:])
    return side // 8 or 1, side // 16 or 1


def _occlusion_defaults(graph: Graph, budget_units: float) -> dict[str, int]:
    """The default window and stride, doubled together until the occluded copies fit the budget."""
    window, stride = occlusion_default(graph)
    side = max(graph.input_shape[1:])
    while 1 + _occlusion_windows(graph, {"window": window, "stride": stride}) > budget_units and window < side:
        window, stride = min(window * 2, side), min(stride * 2, side)
    return {"window": window, "stride": stride}


def _occlusion_windows(graph: Graph, options: dict[str, Any]) -> int:
    """The occluded copies occlusion will pass, as ``occlusion.window_starts`` places them."""
    default_window, default_stride = occlusion_default(graph)
    window = max(int(options.get("window", default_window)), 1)
    stride = max(int(options.get("stride", default_stride)), 1)
    count = 1
    for starts in window_starts(tuple(graph.input_shape[1:]), window, stride):
        count *= len(starts)
    return count


def _gmacs(macs: float) -> str:
    return f"{macs / 1e9:.3g} GMACs"


def _refusal(method: str, per_pass: int, max_macs: int, alternatives: Sequence[str],
             limit_name: str) -> AttributionError:
    """``method`` cannot fit ``max_macs`` even at its smallest: name the cheapest alternative that fits (ties: the
    first in ``alternatives``), or say that none does and what to raise."""
    budget_units = max_macs / per_pass
    needed = minimum_units(method)
    head = (f"{method} on this model needs at least {_gmacs(needed * per_pass)} ({needed} passes' work, one pass "
            f"is {_gmacs(per_pass)}), more than this server allows per request ({_gmacs(max_macs)})")
    others = sorted((minimum_units(m), i, m) for i, m in enumerate(alternatives) if m != method)
    fitting = [(units, m) for units, _, m in others if units <= budget_units]
    if fitting:
        units, other = fitting[0]
        return AttributionError(f"{head}: try {other}, which needs about {_gmacs(units * per_pass)}")
    if others:
        units, _, cheapest = others[0]
        return AttributionError(f"{head}, and no method fits this model (the cheapest, {cheapest}, needs about "
                                f"{_gmacs(units * per_pass)}): raise {limit_name} to at least that, or use a smaller "
                                "model")
    return AttributionError(f"{head}: raise {limit_name} to at least {_gmacs(needed * per_pass)}, or use a smaller "
                            "model")
