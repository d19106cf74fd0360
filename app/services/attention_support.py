"""What can explain a model, before any input is sent: the input it takes (its kind and the shape to send), its
output (class scores, or a map of class scores explained over a region) and, per method, whether it applies or why
not. The page draws its controls from this answer instead of keeping its own copy of the rules.

Each method is checked exactly as ``POST /api/models/{id}/attention`` checks it before reading the input
(``engine.attention.check_applicable`` with the model's default layer and options), so a method offered here is
refused later only for its work (the budget) or for the input itself.
"""

from __future__ import annotations

from app.schemas.attention import AttentionSupport, MethodSupport
from app.services.attention import AttentionRequest, method_arguments
from app.services.models import StoredModel, takes_images
from engine.attention import METHODS, check_applicable
from engine.attention.common import (
    INPUT_KINDS,
    default_layer,
    input_kind,
    output_kind,
    region_axes,
    resolve_layer,
    score_node,
)
from engine.errors import EngineError
from engine.graph import Graph


def expected_input(shape: list[int], images: bool) -> str:
    """What to send, in words: ``[2, 32]`` -> "a .npy file holding a float array of shape [2, 32] (C, L: 2 channels,
    32 positions), or [1, 2, 32]"."""
    axes = INPUT_KINDS.get(len(shape) - 1)
    spelled = f"[{', '.join(map(str, shape))}]"
    batched = f"[1, {', '.join(map(str, shape))}]"
    if axes is None:
        what = ""
    else:
        channels = f"{shape[0]} channel{'s' if shape[0] != 1 else ''}"
        spatial = " × ".join(map(str, shape[-2:]))
        sizes = {"sequence": f"{shape[-1]} positions", "image": f"{spatial} pixels",
                 "volume": f"{shape[1]} slices of {spatial}"}[axes[0]]
        what = f" ({axes[1][1:-1]}: {channels}, {sizes})"
    tensor = f"a .npy file holding a float array of shape {spelled}{what}, or {batched}"
    return f"an image, or {tensor} (preprocessed as the model expects)" if images else tensor


def attention_support(model: StoredModel) -> AttentionSupport:
    """``model``'s input, output and the methods that apply to it (with each refusal's reason)."""
    graph = model.graph
    shape = [int(n) for n in graph.input_shape]
    try:
        kind: str | None = input_kind(graph)
    except EngineError:
        kind = None
    try:
        outputs: str | None = output_kind(graph)
        axes = region_axes(graph)
    except EngineError:
        outputs, axes = None, None
    methods = []
    for name in METHODS:
        layer, options = method_arguments(model, AttentionRequest(name))
        try:
            check_applicable(graph, name, layer, options)
        except EngineError as exc:
            methods.append(MethodSupport(name=name, available=False, reason=str(exc)))
        else:
            methods.append(MethodSupport(name=name, available=True))
    explainable = any(m.available for m in methods)
    layers = [node.id for node in graph.nodes if fits_layer(graph, node.id)] if kind else []
    default = method_arguments(model, AttentionRequest("gradcam"))[0]  # the model's CAM layer, if it names one
    if default is None and layers:
        try:
            default = default_layer(graph)
        except EngineError:
            default = None
    scores = [int(n) for n in graph.by_id[score_node(graph)].output_shape]
    return AttentionSupport(
        model_id=model.id, explainable=explainable,
        reason=None if explainable else next(m.reason for m in methods),
        input_kind=kind, input_shape=shape, input_axes=INPUT_KINDS[len(shape) - 1][1] if kind else None,
        takes_images=takes_images(graph), expected_input=expected_input(shape, takes_images(graph)),
        output_kind=outputs, output_shape=scores, region_axes=list(axes) if axes else None,
        region_shape=scores[1:] if outputs == "map" else None, layers=layers,
        default_layer=default, methods=methods)


def fits_layer(graph: Graph, node_id: str) -> bool:
    """``node_id`` has the input's spatial axes (a method that takes a layer accepts it)."""
    try:
        resolve_layer(graph, node_id)
    except EngineError:
        return False
    return True
