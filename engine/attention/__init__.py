"""Attention maps: which parts of the input drove the decision.

``explain(graph, params, x, method, target=None, layer=None, **options) -> AttributionMap`` runs one
method on one input ``x: (1, C, H, W)``; ``METHODS`` describes them all (see docs/attention.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.attention import cam as cams
from engine.attention import gradients as grad_methods
from engine.attention.budget import occlusion_default, plan
from engine.attention.common import (
    AttributionError,
    AttributionMap,
    Progress,
    check_single_input,
    forward_with_layer,
    input_hw,
    normalize_cam,
    normalize_signed,
    normalize_unsigned,
    resolve_layer,
    resolve_target,
    score_node,
)
from engine.attention.effective_rf import effective_field
from engine.attention.occlusion import occlusion
from engine.attention.resize import resize_bilinear
from engine.errors import EngineError
from engine.graph import INPUT, Graph
from engine.receptive_field import receptive_fields, unit_box

__all__ = ["MANY_PASS", "METHODS", "AttributionError", "AttributionMap", "MethodInfo", "Progress", "explain",
           "resize_bilinear"]


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
               False, False, "The attention weights the network itself computed: a softmax over positions "
               "used for a weighted sum of the features."),
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


def explain(graph: Graph, params: dict[str, np.ndarray], x: np.ndarray, method: str, target: int | None = None,
            layer: str | None = None, max_macs: int | None = None, progress: Progress | None = None,
            **options: Any) -> AttributionMap:
    """Run ``method`` on ``x: (1, C, H, W)`` for class ``target`` (default: the top prediction) at node
    ``layer`` (default: the last spatial layer before pooling; ignored by gradient methods).

    Options: ``batch_size``; Score-CAM ``max_channels``; SmoothGrad ``samples``, ``noise_level``;
    Integrated Gradients ``steps``; occlusion ``window``, ``stride``, ``baseline``; learned attention
    ``attention_node``; effective receptive field ``unit`` (channel, row, column; default: every channel
    at the centre). ``max_macs`` bounds the work (see ``budget.plan``): many-pass defaults shrink to fit
    it and explicit options beyond it are refused.

    ``progress(done, total)`` (``MANY_PASS`` methods only; the others make one or two passes and never call it)
    is called after each batch of passes; it may raise to stop the method there (see ``common.Progress``).
    """
    if method not in METHODS:
        raise AttributionError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    check_single_input(graph, x)
    options = plan(graph, method, options, max_macs, layer)
    hw = input_hw(graph)
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
            trace, target, activations, grads = forward_with_layer(graph, params, x, target, layer)
            if method == "cam":
                raw = cams.cam(graph, params, layer, activations, target)
            elif method == "scorecam":
                raw, extras = cams.score_cam(graph, params, x, activations, target, batch_size=batch_size,
                                             max_channels=options.get("max_channels", 256), progress=progress)
            else:
                raw = _LAYER_CAMS[method](activations, grads)
        score = None if target is None else float(trace.activations[score_node(graph)][0, target])
        return _result(method, target, layer, raw, hw, normalize_cam, signed=False, score=score, extras=extras)

    if method == "learned_attention":
        node_id = options.get("attention_node") or _find_attention_node(graph)
        trace = graph.forward(x, params, keep_caches=False, keep=[node_id, score_node(graph)])
        weights = trace.activations[node_id][0]
        if weights.ndim != 3 or weights.shape[0] != 1:
            raise AttributionError(f"node '{node_id}' has shape {list(weights.shape)}: learned attention "
                                   "needs one weight per position (1, H, W)")
        logits = trace.activations[score_node(graph)]
        top = resolve_target(graph, logits, None)
        extras = {"weights_sum": float(weights.sum()), "prediction": top}
        return _result(method, None, node_id, weights[0], hw, normalize_unsigned, signed=False,
                       score=None, extras=extras)

    if method == "effective_rf":
        return _effective_rf(graph, params, x, layer, options.get("unit"), hw)

    # gradient and perturbation methods work on the input pixels
    logits = graph.forward(x, params, keep_caches=False, stop_at=score_node(graph), keep=()).output
    target = resolve_target(graph, logits, target)
    score = float(logits[0, target])
    if method == "saliency":
        raw = grad_methods.saliency(graph, params, x, target)
    elif method == "smoothgrad":
        raw = grad_methods.smooth_grad(graph, params, x, target, samples=int(options.get("samples", 25)),
                                       noise_level=float(options.get("noise_level", 0.15)), batch_size=batch_size,
                                       progress=progress)
    elif method == "integrated_gradients":
        raw, extras = grad_methods.integrated_gradients(graph, params, x, target, steps=int(options.get("steps", 64)),
                                                        batch_size=batch_size, progress=progress)
    elif method == "guided_backprop":
        raw = grad_methods.guided_backprop(graph, params, x, target)
    else:
        default_window, default_stride = occlusion_default(graph)
        raw, extras = occlusion(graph, params, x, target, window=int(options.get("window", default_window)),
                                stride=int(options.get("stride", default_stride)),
                                baseline=float(options.get("baseline", 0.0)), batch_size=batch_size,
                                progress=progress)
    normalizer = normalize_signed if info.signed else normalize_unsigned
    return _result(method, target, INPUT, raw, hw, normalizer, signed=info.signed, score=score, extras=extras)


def _result(method: str, target: int | None, layer: str, raw: np.ndarray, hw: tuple[int, int], normalizer,
            signed: bool, score: float | None, extras: dict) -> AttributionMap:
    raw = np.asarray(raw, dtype=np.float32)
    upsampled = raw if raw.shape == hw else resize_bilinear(raw, hw)
    return AttributionMap(method=method, target=target, layer=layer, layer_map=raw,
                          layer_map_normalized=normalizer(raw), input_map=upsampled,
                          input_map_normalized=normalizer(upsampled), signed=signed, score=score, extras=extras)


def _find_attention_node(graph: Graph) -> str:
    for node in graph.nodes:
        if node.op.op == "spatial_softmax":
            return node.id
    raise AttributionError("this model has no attention layer (a spatial_softmax node): "
                           "try gradcam or another post-hoc method")


def _effective_rf(graph: Graph, params: dict, x: np.ndarray, layer: str | None, unit: Any,
                  hw: tuple[int, int]) -> AttributionMap:
    """Effective receptive field (Luo et al., 2016): ``|∂y/∂x|`` summed over input channels, for one unit
    ``y`` of ``layer`` (default: the centre position, summed over its channels)."""
    layer = resolve_layer(graph, layer)
    channels, height, width = graph.by_id[layer].output_shape
    if unit is None:
        raw = effective_field(graph, params, x, layer, (height // 2, width // 2))
        unit = (None, height // 2, width // 2)
    else:
        unit = tuple(int(u) for u in unit)
        raw = effective_field(graph, params, x, layer, unit)
    extras: dict[str, Any] = {"unit": list(unit), "layer_shape": [channels, height, width]}
    rf = receptive_fields(graph, strict=False)[layer]
    try:
        extras["theoretical"] = unit_box(rf, unit[1:]).to_dict()
    except EngineError as exc:  # e.g. a transposed convolution upstream: no theoretical box
        extras["theoretical_unavailable"] = str(exc)
    return _result("effective_rf", None, layer, raw, hw, normalize_unsigned, signed=False, score=None,
                   extras=extras)
