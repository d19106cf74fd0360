"""Bounding the work of one attention request.

Work is counted in *units*: one forward pass of one input costs 1, a backward pass about 2 more (it
does roughly twice the forward's multiply-accumulates). A request costs ``units x the graph's MACs``.
Methods that need many passes get defaults that fit the budget; options given explicitly that do not
fit are refused with the largest value that would.
"""

from __future__ import annotations

from typing import Any

from engine.attention.common import AttributionError, resolve_layer
from engine.graph import Graph

#: (option, default, units per step, fixed units)
_MANY_PASS = {
    "smoothgrad": ("samples", 25, 3, 1),
    "integrated_gradients": ("steps", 64, 3, 2),
    "scorecam": ("max_channels", 256, 1, 3),
}
_FIXED = {"saliency": 3, "guided_backprop": 3, "effective_rf": 3, "eigencam": 1, "learned_attention": 1}
_MINIMUM_STEPS = {"samples": 1, "steps": 2, "max_channels": 1}


def graph_macs(graph: Graph) -> int:
    """Multiply-accumulates of one forward pass of one input."""
    return sum(node.op.macs() for node in graph.nodes)


def plan(graph: Graph, method: str, options: dict[str, Any], max_macs: int | None, layer: str | None = None
         ) -> dict[str, Any]:
    """``options`` with the many-pass defaults filled in to fit ``max_macs``; raises AttributionError
    when the request cannot fit. ``max_macs=None`` means no bound (defaults as documented)."""
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
        if name not in options:
            if largest < _MINIMUM_STEPS[name]:
                raise _refusal(method, per_pass, max_macs)
            options[name] = min(default, largest)
        elif int(options[name]) > largest:
            hint = f"use {name} <= {largest}" if largest >= _MINIMUM_STEPS[name] else "use a smaller model"
            raise AttributionError(f"{method} with {name}={options[name]} needs about "
                                   f"{(fixed + per_step * int(options[name])) * per_pass / 1e9:.1f} GMACs, more than "
                                   f"this server allows per request ({max_macs / 1e9:.1f}): {hint}")
        return options
    if budget_units is None:
        return options
    units = _FIXED.get(method, 2)
    if method == "occlusion":
        if "window" not in options and "stride" not in options:
            options.update(_occlusion_defaults(graph, budget_units))
        units = 1 + _occlusion_windows(graph, options)
    if units > budget_units:
        if method == "occlusion":
            raise AttributionError(f"occlusion with these settings needs {units - 1} occluded copies, more than "
                                   f"this server allows per request (about {int(budget_units) - 1}): "
                                   "use a larger stride or window")
        raise _refusal(method, per_pass, max_macs)
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
    return _FIXED.get(method, 2) * per_pass


def occlusion_default(graph: Graph) -> tuple[int, int]:
    """The default window and stride: an eighth and a sixteenth of the input's larger side."""
    side = max(graph.input_shape[1:3])
    return side // 8 or 1, side // 16 or 1


def _occlusion_defaults(graph: Graph, budget_units: float) -> dict[str, int]:
    """The default window and stride, doubled together until the occluded copies fit the budget."""
    window, stride = occlusion_default(graph)
    side = max(graph.input_shape[1:3])
    while 1 + _occlusion_windows(graph, {"window": window, "stride": stride}) > budget_units and window < side:
        window, stride = min(window * 2, side), min(stride * 2, side)
    return {"window": window, "stride": stride}


def _occlusion_windows(graph: Graph, options: dict[str, Any]) -> int:
    height, width = graph.input_shape[1:3]
    default_window, default_stride = occlusion_default(graph)
    window = int(options.get("window", default_window))
    stride = max(int(options.get("stride", default_stride)), 1)

    def count(size: int) -> int:
        if window > size:
            return 1
        n = (size - window) // stride + 1
        return n + (1 if (size - window) % stride else 0)

    return count(height) * count(width)


def _refusal(method: str, per_pass: int, max_macs: int) -> AttributionError:
    return AttributionError(f"{method} on this model needs more work than this server allows per request "
                            f"(one pass is {per_pass / 1e9:.2f} GMACs, the limit {max_macs / 1e9:.1f}): "
                            "try gradcam, which needs a single pass")
