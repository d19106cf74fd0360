"""Attention maps: GET /api/attention/methods and POST /api/models/{model_id}/attention."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from app.api.deps import ComputeDep, ModelDep, ModelInputDep, SettingsDep
from app.errors import ApiError
from app.schemas.attention import AttentionResponse, MethodInfo, MethodList
from app.services.finite import check_finite, overflow_error
from app.services.inputs import INPUT_OPENAPI, prepare_input
from app.services.models import takes_images
from app.services.overlay import blend, colour, picture_of, png_data_url
from app.services.predictions import label_of
from engine.analysis import jsonable
from engine.attention import METHODS, explain

router = APIRouter(tags=["attention"])


@router.get("/attention/methods", response_model=MethodList)
def list_methods() -> MethodList:
    """Every attribution method: name, family, paper, and whether it takes a layer or a target."""
    return MethodList(methods=[MethodInfo(**m.__dict__) for m in METHODS.values()])


def _grid(values: np.ndarray) -> list[list[float]]:
    values = np.asarray(values, dtype=np.float64)
    return (values if values.ndim == 2 else values.reshape(1, -1)).round(6).tolist()


@router.post("/models/{model_id}/attention", response_model=AttentionResponse, openapi_extra=INPUT_OPENAPI)
def create_attention(
    model: ModelDep,
    model_input: ModelInputDep,
    settings: SettingsDep,
    compute: ComputeDep,
    method: Annotated[str, Query(description="an attribution method (GET /api/attention/methods)")] = "gradcam",
    target: Annotated[int | None, Query(ge=0, description="class to explain (default: the top prediction)")] = None,
    layer: Annotated[str | None, Query(description="node id (default: the model's CAM layer)")] = None,
    include_input_map: Annotated[bool, Query(description="also return the upsampled map as numbers")] = False,
    samples: Annotated[int | None, Query(ge=1, le=64, description="SmoothGrad: noisy copies")] = None,
    steps: Annotated[int | None, Query(ge=2, le=128, description="Integrated Gradients: path steps")] = None,
    window: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window side in pixels")] = None,
    stride: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window step in pixels")] = None,
    max_channels: Annotated[int | None, Query(ge=1, le=512, description="Score-CAM: channels used")] = None,
) -> AttentionResponse:
    """An attention map for an image or .npy tensor: raw and normalised at the layer, upsampled, and overlaid."""
    if method not in METHODS:
        hint = ""
        if method.replace(" ", "+") in METHODS:  # '+' in a query string means a space
            hint = f" ('+' in a URL is a space: write method={method.replace(' ', '%2B')})"
        raise ApiError(422, f"unknown method '{method}'{hint}; choose one of: {', '.join(METHODS)}")
    info = METHODS[method]
    graph = model.graph
    if layer is not None and layer not in graph.by_id:
        known = ", ".join(n.id for n in graph.nodes[:40])
        raise ApiError(404, f"model '{model.id}' has no node '{layer}'; its nodes: {known}")
    classes = graph.nodes[-1].output_shape
    if target is not None and len(classes) == 1 and target >= classes[0]:
        raise ApiError(422, f"target {target} is not a class of model '{model.id}': use 0 to {classes[0] - 1}")
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    options = {k: v for k, v in {"samples": samples, "steps": steps, "window": window, "stride": stride,
                                 "max_channels": max_channels}.items() if v is not None}
    if method == "learned_attention" and model.bundle.attention_node:
        options["attention_node"] = model.bundle.attention_node
    if info.uses_layer and layer is None:
        layer = model.bundle.cam_layer
    with compute():
        start = time.perf_counter()
        try:
            result = explain(graph, model.bundle.params, prepared.x, method, target=target, layer=layer,
                             max_macs=int(settings.max_attention_gmacs * 1e9), **options)
        except np.linalg.LinAlgError as exc:  # an SVD (Eigen-CAM) of activations that overflowed
            raise overflow_error(model.id, f"in the activations {method} decomposes") from exc
        elapsed = (time.perf_counter() - start) * 1000
    check_finite(model.id, np.asarray(result.layer_map, dtype=np.float64), f"in the {method} map")
    if result.score is not None:
        check_finite(model.id, np.asarray(result.score, dtype=np.float64), "in the class score")
    picture = prepared.picture if prepared.picture is not None else picture_of(
        prepared.x[0], model.bundle.preprocessing if takes_images(graph) else None)
    upsampled = np.asarray(result.input_map_normalized, dtype=np.float64)
    if upsampled.ndim != 2 or upsampled.shape != picture.shape[:2]:
        raise ApiError(422, f"method '{method}' gave a map of shape {list(upsampled.shape)}, which cannot be laid "
                            f"over a {picture.shape[0]}×{picture.shape[1]} input")
    return AttentionResponse(
        model_id=model.id, method=method, target=result.target,
        target_label=None if result.target is None else label_of(model, result.target), score=result.score,
        layer=result.layer, signed=result.signed, layer_shape=list(np.shape(result.layer_map)),
        layer_map=_grid(result.layer_map), layer_map_normalized=_grid(result.layer_map_normalized),
        input_shape=list(upsampled.shape), input_map=_grid(upsampled) if include_input_map else None,
        input_map_png=png_data_url(colour(upsampled, result.signed)),
        overlay_png=png_data_url(blend(picture, upsampled, result.signed)), picture_png=png_data_url(picture),
        extras=jsonable(result.extras), elapsed_ms=elapsed)
