"""Attention maps: which parts of the input drove the decision.

``explain(graph, params, x, method, target=None, layer=None, **options) -> AttributionMap`` runs one
method on one input ``x: (1, C, H, W)`` (or a sequence ``(1, C, L)``, or a volume ``(1, C, D, H, W)``);
``METHODS`` describes them all (see docs/attention.md). ``prepare`` says, before any pass, whether a request can
be done: every method works for every input kind, for class scores ``(K,)`` and for maps of class scores
``(K, *S)`` (the target's logits summed over a ``region``), except where the method's own structure is missing
(CAM's pooling and linear head, learned attention's attention layer).

For a model that reads a sequence (a recurrent network; ``engine.attention.steps``), learned attention takes the
weights over time steps of its ``sequence_attention`` node, and saliency and gradient × input also give one number
per step (``AttributionMap.steps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.attention import cam as cams
from engine.attention import gradients as grad_methods
from engine.attention import steps as time_steps
from engine.attention.budget import occlusion_default, plan
from engine.attention.common import (
    AttributionError,
    AttributionMap,
    Progress,
    check_single_input,
    class_scores,
    forward_with_layer,
    input_kind,
    input_size,
    normalize_cam,
    normalize_signed,
    normalize_unsigned,
    output_kind,
    region_list,
    resolve_layer,
    resolve_region,
    resolve_target,
    score_node,
)
from engine.attention.effective_rf import effective_field
from engine.attention.occlusion import check_window, occlusion
from engine.attention.resize import resize_bilinear, resize_linear
from engine.errors import EngineError
from engine.graph import INPUT, Graph
from engine.receptive_field import receptive_fields, unit_box
from engine.time_steps import record_steps

__all__ = ["MANY_PASS", "METHODS", "AttributionError", "AttributionMap", "MethodInfo", "Progress", "explain",
           "input_kind", "prepare", "resize_bilinear", "resize_linear"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    family: str  # "class activation map", "gradient", "perturbation", "learned", "receptive field"
    paper: str
    signed: bool
    uses_layer: bool
    uses_target: bool
    description: str


METHODS: dict[str, MethodInfo] = {m.name: m for m in [
    MethodInfo("cam", "CAM", "class activation map", "Zhou et al., 2016", False, True, True,
               "The final linear layer's weights for the class applied to the last feature maps: needs "
               "global average pooling then one linear layer."),
    MethodInfo("gradcam", "Grad-CAM", "class activation map", "Selvaraju et al., 2017", False, True, True,
               "Feature maps weighted by their average gradient of the class score."),
    MethodInfo("gradcam++", "Grad-CAM++", "class activation map", "Chattopadhay et al., 2018", False, True, True,
               "Like Grad-CAM, with per-position weights from second and third powers of the gradient."),
    MethodInfo("xgradcam", "XGrad-CAM", "class activation map", "Fu et al., 2020", False, True, True,
               "Gradients weighted by the normalised activations."),
    MethodInfo("layercam", "LayerCAM", "class activation map", "Jiang et al., 2021", False, True, True,
               "Each position weighted by its own positive gradient: sharper maps from earlier layers."),
    MethodInfo("scorecam", "Score-CAM", "class activation map", "Wang et al., 2020", False, True, True,
               "Each feature map used as a mask on the input; its weight is the confidence it gives the class."),
    MethodInfo("eigencam", "EigenCAM", "class activation map", "Muhammad & Yeasin, 2020", False, True, False,
               "The first principal component of the feature maps: class-agnostic, no gradients."),
    MethodInfo("saliency", "Vanilla gradient", "gradient", "Simonyan et al., 2014", False, False, True,
               "How much each pixel's change would change the class score: |∂S/∂x|."),
    MethodInfo("gradient_x_input", "Gradient × Input", "gradient", "Shrikumar et al., 2016", True, False, True,
               "Each input value times the class score's gradient there, summed over channels: positive where "
               "the value raises the score."),
    MethodInfo("smoothgrad", "SmoothGrad", "gradient", "Smilkov et al., 2017", False, False, True,
               "Vanilla gradients averaged over noisy copies of the input, which removes speckle."),
    MethodInfo("integrated_gradients", "Integrated Gradients", "gradient", "Sundararajan et al., 2017", True,
               False, True, "Gradients integrated along a path from a baseline: attributions add up to the "
               "score difference."),
    MethodInfo("guided_backprop", "Guided Backpropagation", "gradient", "Springenberg et al., 2015", False,
               False, True, "The input gradient passing only positive signals back through each ReLU."),
    MethodInfo("occlusion", "Occlusion", "perturbation", "Zeiler & Fergus, 2014", True, False, True,
               "How much the class score drops when a window of the input is covered."),
    MethodInfo("learned_attention", "Learned attention", "learned", "the model's own attention layer", False,
               False, False, "The attention weights the network itself computed: a softmax over positions (or "
               "over a sequence's time steps) used for a weighted sum of the features."),
    MethodInfo("effective_rf", "Effective receptive field", "receptive field", "Luo et al., 2016", False, True,
               False, "The gradient of one unit with respect to the input, beside its theoretical receptive field."),
]}

#: the methods that pass the input through the network many times (one pass per step, sample, channel or window):
#: they take ``progress``
MANY_PASS = frozenset({"scorecam", "smoothgrad", "integrated_gradients", "occlusion"})

_LAYER_CAMS = {
    "gradcam": cams.grad_cam,
    "gradcam++": cams.grad_cam_plus_plus,
    "xgradcam": cams.xgrad_cam,
    "layercam": cams.layer_cam,
}
_INPUT_GRADIENTS = {
    "saliency": grad_methods.saliency,
    "gradient_x_input": grad_methods.gradient_x_input,
    "guided_backprop": grad_methods.guided_backprop,
}
#: the methods that read no score at all, so that any output will do
_SCORELESS = frozenset({"eigencam", "effective_rf"})


def check_applicable(graph: Graph, method: str, layer: str | None = None, options: dict[str, Any] | None = None
                     ) -> None:
    """Refuse, before any pass and whatever the work, a request this model cannot answer: an unknown method, an
    input without 1 to 3 spatial axes, an output that is neither class scores nor a map of them, a layer or
    region that does not fit, or a method whose structure the model lacks (CAM's head, an attention layer), or
    occlusion's window and stride that would leave pixels uncovered."""
    options = options or {}
    if method not in METHODS:
        raise AttributionError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    info = METHODS[method]
    size = input_size(graph)
    if method not in _SCORELESS:
        output_kind(graph)
    if options.get("region") is not None:
        if not info.uses_target:
            raise AttributionError(f"{method} explains no class score, so it takes no region: leave region out")
        resolve_region(graph, options["region"])
    if info.uses_layer:
        layer = resolve_layer(graph, layer)
    if method == "cam":
        cams.cam_head(graph, layer)
    elif method == "learned_attention":
        _attention_node(graph, options.get("attention_node"))
    elif method == "occlusion" and ("window" in options or "stride" in options):
        default_window, default_stride = occlusion_default(graph)
        check_window(size, int(options.get("window", default_window)), int(options.get("stride", default_stride)))


def applicable_methods(graph: Graph) -> list[str]:
    """The methods that can explain this model (with their default layer and options), in ``METHODS``' order."""
    usable = []
    for method in METHODS:
        try:
            check_applicable(graph, method)
        except AttributionError:
            continue
        usable.append(method)
    return usable


def prepare(graph: Graph, method: str, options: dict[str, Any], max_macs: int | None = None,
            layer: str | None = None, limit_name: str = "max_macs") -> dict[str, Any]:
    """Everything that can be refused before a pass, in this order: whether the method applies to this model
    (``check_applicable``: a model that cannot be explained at all is told that first), then the work
    (``budget.plan``, whose refusal names the cheapest other method that fits, or ``limit_name`` to raise).
    Returns the options with the many-pass defaults filled in to fit ``max_macs``."""
    check_applicable(graph, method, layer, options)
    alternatives = () if max_macs is None else [m for m in applicable_methods(graph) if m != method]
    return plan(graph, method, options, max_macs, layer, alternatives, limit_name)


def explain(graph: Graph, params: dict[str, np.ndarray], x: np.ndarray, method: str, target: int | None = None,
            layer: str | None = None, max_macs: int | None = None, progress: Progress | None = None,
            **options: Any) -> AttributionMap:
    """Run ``method`` on ``x: (1, C, H, W)`` (a sequence ``(1, C, L)``, a volume ``(1, C, D, H, W)``) for class
    ``target`` (default: the top prediction) at node ``layer`` (default: the last spatial layer before pooling;
    ignored by gradient methods). Maps have the input's spatial shape.

    Options: ``batch_size``; ``region`` for a model whose output is a map of class scores ``(K, *S)``
    (``common.resolve_region``: ``[y0, x0, y1, x1]`` for ``(K, H, W)``, half-open; default the whole map; the
    score is the sum of class ``target``'s logits over it); Score-CAM ``max_channels``; SmoothGrad ``samples``,
    ``noise_level``; Integrated Gradients ``steps``; occlusion ``window``, ``stride``, ``baseline``; learned
    attention ``attention_node``; effective receptive field ``unit`` (channel, then one index per spatial axis;
    default: every channel at the centre). ``max_macs`` bounds the work (see ``prepare`` and ``budget.plan``):
    many-pass defaults shrink to fit it and explicit options beyond it are refused.

    ``progress(done, total)`` (``MANY_PASS`` methods only; the others make one or two passes and never call it)
    is called after each batch of passes; it may raise to stop the method there (see ``common.Progress``).
    """
    if method not in METHODS:
        raise AttributionError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    check_single_input(graph, x)
    options = prepare(graph, method, options, max_macs, layer)
    size = input_size(graph)
    region = resolve_region(graph, options.get("region"))
    info = METHODS[method]
    extras: dict[str, Any] = {}
    batch_size = int(options.get("batch_size", 16))

    if method in _LAYER_CAMS or method in {"cam", "scorecam", "eigencam"}:
        layer = resolve_layer(graph, layer)
        if method == "eigencam":
            trace = graph.forward(x, params, keep_caches=False, stop_at=score_node(graph), keep=[layer])
            activations = trace.activations[layer][0]
            target = None
            raw = cams.eigen_cam(activations)
        else:
            trace, target, activations, grads = forward_with_layer(graph, params, x, target, layer, region)
            if method == "cam":
                raw = cams.cam(graph, params, layer, activations, target)
            elif method == "scorecam":
                raw, extras = cams.score_cam(graph, params, x, activations, target, batch_size=batch_size,
                                             max_channels=options.get("max_channels", 256), progress=progress,
                                             region=region)
            else:
                raw = _LAYER_CAMS[method](activations, grads)
        score = None if target is None else float(class_scores(trace.activations[score_node(graph)],
                                                               region)[0, target])
        return _result(method, target, layer, raw, size, normalize_cam, signed=False, score=score, extras=extras,
                       region=region_list(region))

    if method == "learned_attention":
        node_id = _attention_node(graph, options.get("attention_node"))
        if graph.by_id[node_id].op.op == "sequence_attention":
            return _learned_steps(graph, params, x, node_id)
        trace = graph.forward(x, params, keep_caches=False, keep=[node_id, score_node(graph)])
        weights = trace.activations[node_id][0]
        logits = trace.activations[score_node(graph)]
        top = resolve_target(graph, logits, None)
        extras = {"weights_sum": float(weights.sum()), "prediction": top}
        return _result(method, None, node_id, weights[0], size, normalize_unsigned, signed=False,
                       score=None, extras=extras)

    if method == "effective_rf":
        return _effective_rf(graph, params, x, layer, options.get("unit"), size)

    # gradient and perturbation methods work on the input pixels
    logits = graph.forward(x, params, keep_caches=False, stop_at=score_node(graph), keep=()).output
    target = resolve_target(graph, logits, target, region)
    score = float(class_scores(logits, region)[0, target])
    step_values = None
    sequence = time_steps.sequence_read(graph) if method in time_steps.PER_STEP_RULES else None
    if sequence is not None:  # the same map, and one number per time step from the same backward pass
        grads, per_step = time_steps.gradient_steps(graph, params, x, target, method, sequence, region)
        raw = grad_methods.saliency_of(grads) if method == "saliency" else grad_methods.gradient_x_input_of(x, grads)
        step_values = _step_values(graph, sequence, per_step, info.signed, time_steps.PER_STEP_RULES[method])
    elif method in _INPUT_GRADIENTS:
        raw = _INPUT_GRADIENTS[method](graph, params, x, target, region=region)
    elif method == "smoothgrad":
        raw = grad_methods.smooth_grad(graph, params, x, target, samples=int(options.get("samples", 25)),
                                       noise_level=float(options.get("noise_level", 0.15)), batch_size=batch_size,
                                       progress=progress, region=region)
    elif method == "integrated_gradients":
        raw, extras = grad_methods.integrated_gradients(graph, params, x, target, steps=int(options.get("steps", 64)),
                                                        batch_size=batch_size, progress=progress, region=region)
    else:
        default_window, default_stride = occlusion_default(graph)
        raw, extras = occlusion(graph, params, x, target, window=int(options.get("window", default_window)),
                                stride=int(options.get("stride", default_stride)),
                                baseline=float(options.get("baseline", 0.0)), batch_size=batch_size,
                                progress=progress, region=region)
    normalizer = normalize_signed if info.signed else normalize_unsigned
    result = _result(method, target, INPUT, raw, size, normalizer, signed=info.signed, score=score, extras=extras,
                     region=region_list(region))
    result.steps = step_values
    return result


def _result(method: str, target: int | None, layer: str, raw: np.ndarray, size: tuple[int, ...], normalizer,
            signed: bool, score: float | None, extras: dict, region: list[int] | None = None) -> AttributionMap:
    raw = np.asarray(raw, dtype=np.float32)
    upsampled = raw if raw.shape == size else resize_linear(raw, size)
    return AttributionMap(method=method, target=target, layer=layer, layer_map=raw,
                          layer_map_normalized=normalizer(raw), input_map=upsampled,
                          input_map_normalized=normalizer(upsampled), signed=signed, score=score, extras=extras,
                          region=region)


def _attention_node(graph: Graph, node_id: str | None) -> str:
    """``node_id`` (default: the model's first ``spatial_softmax``, else its first ``sequence_attention``), checked
    to hold one weight per position (or per time step, laid on the input)."""
    if node_id is None:
        node_id = next((node.id for node in graph.nodes if node.op.op == "spatial_softmax"), None)
        node_id = node_id or next((node.id for node in graph.nodes if node.op.op == "sequence_attention"), None)
        if node_id is None:
            raise AttributionError("this model has no attention layer (a spatial_softmax node, or a "
                                   "sequence_attention node over time steps): try gradcam or another post-hoc method")
    if node_id not in graph.by_id:
        raise AttributionError(f"no node '{node_id}' in this model")
    if graph.by_id[node_id].op.op == "sequence_attention":
        time_steps.check_attention_steps(graph, node_id)
        return node_id
    shape = graph.by_id[node_id].output_shape
    dims = len(input_size(graph))
    if len(shape) != 1 + dims or shape[0] != 1:
        raise AttributionError(f"node '{node_id}' has shape {list(shape)}: learned attention needs one weight per "
                               f"position, (1, {', '.join(['*'] * dims)}) with the input's {dims} spatial axes")
    return node_id


def _step_values(graph: Graph, node_id: str, values: np.ndarray, signed: bool, rule: str) -> time_steps.StepValues:
    """One number per step of sequence ``node_id``, normalised as the method's maps are."""
    values = np.asarray(values, dtype=np.float64)
    normalized = normalize_signed(values) if signed else normalize_unsigned(values)
    step_of = time_steps.steps_on_input(graph, node_id)
    return time_steps.StepValues(node=node_id, values=values, normalized=normalized, signed=signed,
                                 step_axis=time_steps.step_axis(graph, step_of), rule=rule,
                                 input_map=None if step_of is None else time_steps.map_on_input(normalized, step_of))


def _learned_steps(graph: Graph, params: dict, x: np.ndarray, node_id: str) -> AttributionMap:
    """Learned attention over time steps: the ``sequence_attention`` node's weights (T,) as its recording gives
    them, each input value given its step's weight (``steps.map_on_input``)."""
    node = graph.by_id[node_id]
    trace = graph.forward(x, params, keep_caches=False, keep=[*node.inputs, score_node(graph)])
    recorded = record_steps(graph, params, trace, node_id)
    weights, scores = recorded["weights"].astype(np.float64), recorded["scores"].astype(np.float64)
    step_of = time_steps.steps_on_input(graph, node.inputs[0])
    assert step_of is not None  # _attention_node refused it otherwise
    normalized = normalize_unsigned(weights)
    extras = {"weights_sum": float(weights.sum()),
              "prediction": resolve_target(graph, trace.activations[score_node(graph)], None),
              "scores": scores.tolist()}
    on_input = time_steps.map_on_input(normalized, step_of)
    steps = time_steps.StepValues(node=node_id, values=weights, normalized=normalized, signed=False,
                                  step_axis=time_steps.step_axis(graph, step_of),
                                  rule="the softmax weight of each step (they sum to 1)", input_map=on_input)
    return AttributionMap(method="learned_attention", target=None, layer=node_id, layer_map=weights.astype(np.float32),
                          layer_map_normalized=normalized, input_map=time_steps.map_on_input(weights, step_of),
                          input_map_normalized=on_input, signed=False, score=None, extras=extras, steps=steps)


def _effective_rf(graph: Graph, params: dict, x: np.ndarray, layer: str | None, unit: Any,
                  size: tuple[int, ...]) -> AttributionMap:
    """Effective receptive field (Luo et al., 2016): ``|∂y/∂x|`` summed over input channels, for one unit
    ``y`` of ``layer`` (default: the centre position, summed over its channels)."""
    layer = resolve_layer(graph, layer)
    channels, *spatial = graph.by_id[layer].output_shape
    if unit is None:
        centre = tuple(n // 2 for n in spatial)
        raw = effective_field(graph, params, x, layer, centre)
        unit = (None, *centre)
    else:
        unit = tuple(int(u) for u in unit)
        raw = effective_field(graph, params, x, layer, unit)
    extras: dict[str, Any] = {"unit": list(unit), "layer_shape": [channels, *spatial]}
    rf = receptive_fields(graph, strict=False)[layer]
    try:
        extras["theoretical"] = unit_box(rf, unit[1:]).to_dict()
    except EngineError as exc:  # e.g. a transposed convolution upstream: no theoretical box
        extras["theoretical_unavailable"] = str(exc)
    return _result("effective_rf", None, layer, raw, size, normalize_unsigned, signed=False, score=None,
                   extras=extras)
