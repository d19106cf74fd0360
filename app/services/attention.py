"""An attention map for one model and one input: the request checked, the method run within the work budget, and
the answer built (raw and normalised maps, the upsampled map, PNG overlays).

Errors: ``UnknownMethodError`` and ``UnknownClassError`` (app/services/errors.py), ``UnknownNodeError`` for a layer
the model does not have, engine errors for a layer or option the method cannot use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from app.core.config import Settings
from app.schemas.attention import AttentionResponse
from app.services.errors import UnfitMapError, UnknownClassError, UnknownMethodError
from app.services.finite import check_finite, overflow_error
from app.services.inputs import ModelInput, PreparedInput, prepare_input
from app.services.models import StoredModel, takes_images
from app.services.overlay import blend, colour, picture_of, png_data_url
from app.services.predictions import label_of
from engine.analysis import jsonable
from engine.attention import METHODS, AttributionMap, explain


@dataclass(frozen=True)
class AttentionRequest:
    """What to explain: the method, the class (None: the top prediction), the layer (None: the model's CAM layer)
    and the method's options (``samples``, ``steps``, ``window``, ``stride``, ``max_channels``; None: its default)."""

    method: str = "gradcam"
    target: int | None = None
    layer: str | None = None
    include_input_map: bool = False
    options: Mapping[str, int | None] = field(default_factory=dict)


def attention_map(model: StoredModel, model_input: ModelInput, request: AttentionRequest, settings: Settings,
                  compute: Callable[[], AbstractContextManager[None]]) -> AttentionResponse:
    """The attention map of ``request.method`` for ``model_input``, within ``settings``' input and work limits."""
    check_request(model, request)
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    result, elapsed_ms = run_method(model, prepared.x, request, int(settings.max_attention_gmacs * 1e9), compute)
    return response_of(model, prepared, request, result, elapsed_ms)


def check_request(model: StoredModel, request: AttentionRequest) -> None:
    """Refuse, before the input is read, a method, layer or target class the model does not have."""
    if request.method not in METHODS:
        raise UnknownMethodError(request.method, list(METHODS))
    graph = model.graph
    if request.layer is not None:
        graph.node(request.layer)
    classes = graph.nodes[-1].output_shape
    if request.target is not None and len(classes) == 1 and request.target >= classes[0]:
        raise UnknownClassError(model.id, request.target, classes[0])


def run_method(model: StoredModel, x: np.ndarray, request: AttentionRequest, max_macs: int,
               compute: Callable[[], AbstractContextManager[None]]) -> tuple[AttributionMap, float]:
    """The method's map on ``x`` and the milliseconds it took in a compute slot: many-pass defaults shrink to
    ``max_macs``; a map that overflowed is refused."""
    method, layer = request.method, request.layer
    options: dict[str, int | str] = {k: v for k, v in request.options.items() if v is not None}
    if method == "learned_attention" and model.bundle.attention_node:
        options["attention_node"] = model.bundle.attention_node
    if METHODS[method].uses_layer and layer is None:
        layer = model.bundle.cam_layer
    with compute():
        start = time.perf_counter()
        try:
            result = explain(model.graph, model.bundle.params, x, method, target=request.target, layer=layer,
                             max_macs=max_macs, **options)
        except np.linalg.LinAlgError as exc:  # an SVD (Eigen-CAM) of activations that overflowed
            raise overflow_error(model.id, f"in the activations {method} decomposes") from exc
        elapsed_ms = (time.perf_counter() - start) * 1000
    check_finite(model.id, np.asarray(result.layer_map, dtype=np.float64), f"in the {method} map")
    if result.score is not None:
        check_finite(model.id, np.asarray(result.score, dtype=np.float64), "in the class score")
    return result, elapsed_ms


def _grid(values: np.ndarray) -> list[list[float]]:
    values = np.asarray(values, dtype=np.float64)
    return (values if values.ndim == 2 else values.reshape(1, -1)).round(6).tolist()


def response_of(model: StoredModel, prepared: PreparedInput, request: AttentionRequest, result: AttributionMap,
                elapsed_ms: float) -> AttentionResponse:
    """The maps as numbers and PNGs, the upsampled map laid over the picture the model saw."""
    picture = prepared.picture if prepared.picture is not None else picture_of(
        prepared.x[0], model.bundle.preprocessing if takes_images(model.graph) else None)
    upsampled = np.asarray(result.input_map_normalized, dtype=np.float64)
    if upsampled.ndim != 2 or upsampled.shape != picture.shape[:2]:
        raise UnfitMapError(request.method, list(upsampled.shape), picture.shape[0], picture.shape[1])
    return AttentionResponse(
        model_id=model.id, method=request.method, target=result.target,
        target_label=None if result.target is None else label_of(model, result.target), score=result.score,
        layer=result.layer, signed=result.signed, layer_shape=list(np.shape(result.layer_map)),
        layer_map=_grid(result.layer_map), layer_map_normalized=_grid(result.layer_map_normalized),
        input_shape=list(upsampled.shape), input_map=_grid(upsampled) if request.include_input_map else None,
        input_map_png=png_data_url(colour(upsampled, result.signed)),
        overlay_png=png_data_url(blend(picture, upsampled, result.signed)), picture_png=png_data_url(picture),
        extras=jsonable(result.extras), elapsed_ms=elapsed_ms)
