"""An attention map for one model and one input: the request checked, the method run within the work budget, and
the answer built (raw and normalised maps, the upsampled map, PNG overlays).

The answer's shape follows the input's kind (``engine.attention.input_kind``): an image gets ``AttentionResponse``
(grids and overlays), a sequence ``(C, L)`` ``SequenceAttentionResponse`` (lists and a coloured strip), a volume
``(C, D, H, W)`` ``VolumeAttentionResponse`` (slice by slice; PNGs with the slices side by side).

Two steps, so that a heavy request can run in the background (``app.services.attention_jobs``):
``prepare_attention`` checks everything and reads the input (every refusal happens here, while the request is
still open), ``compute_attention`` runs the method and builds the answer. ``attention_map`` does both at once.

Errors: ``UnknownMethodError`` and ``UnknownClassError`` (app/services/errors.py), ``UnknownNodeError`` for a layer
the model does not have, engine errors for a layer or option the method cannot use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.config import Settings
from app.schemas.attention import (
    AttentionResponse,
    SequenceAttentionResponse,
    StepAttention,
    VolumeAttentionResponse,
)
from app.services.errors import UnfitMapError, UnknownClassError, UnknownMethodError
from app.services.finite import check_finite, overflow_error
from app.services.inputs import ModelInput, PreparedInput, prepare_input
from app.services.models import StoredModel, takes_images
from app.services.overlay import blend, colour, picture_of, png_data_url
from app.services.predictions import label_of
from engine.analysis import jsonable
from engine.attention import MANY_PASS, METHODS, AttributionMap, Progress, explain, input_kind, prepare
from engine.attention.budget import estimated_macs

#: how long a background job waits, with its compute slot released, before taking one again for its next batch, so
#: that a request queued for a slot gets it first (1 ms was too short for a woken thread on a loaded machine: the
#: job took the slot again 1 time in 3)
YIELD_SECONDS = 0.02
#: how the work-budget refusal names the limit to raise
LIMIT_NAME = "the server's CNN_VIS_MAX_ATTENTION_GMACS"
#: the height in pixels of a sequence's coloured strip
STRIP_HEIGHT = 16


@dataclass(frozen=True)
class AttentionRequest:
    """What to explain: the method, the class (None: the top prediction), the layer (None: the model's CAM layer)
    and the method's options (``samples``, ``steps``, ``window``, ``stride``, ``max_channels``, and ``region`` for a
    model whose output is a map of class scores, a list of ints; None: its default)."""

    method: str = "gradcam"
    target: int | None = None
    layer: str | None = None
    include_input_map: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedAttention:
    """A checked request with its input read: what ``compute_attention`` needs, and the work it will do."""

    model: StoredModel
    prepared: PreparedInput
    request: AttentionRequest
    max_macs: int
    estimated_macs: int


def attention_map(model: StoredModel, model_input: ModelInput, request: AttentionRequest, settings: Settings,
                  compute: Callable[[], AbstractContextManager[None]]) -> AnyResponse:
    """The attention map of ``request.method`` for ``model_input``, within ``settings``' input and work limits."""
    return compute_attention(prepare_attention(model, model_input, request, settings), compute)


def prepare_attention(model: StoredModel, model_input: ModelInput, request: AttentionRequest,
                      settings: Settings) -> PreparedAttention:
    """Refuse what cannot be done, in this order: an unknown method, layer or class; a model or method this model
    cannot be explained with (its input or output kind, a region that does not fit); work beyond
    ``settings.max_attention_gmacs``; an unreadable input. Then read the input and estimate the work."""
    check_request(model, request)
    max_macs = int(settings.max_attention_gmacs * 1e9)
    layer, options = method_arguments(model, request)
    planned = prepare(model.graph, request.method, options, max_macs, layer, limit_name=LIMIT_NAME)
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    return PreparedAttention(model, prepared, request, max_macs,
                             estimated_macs(model.graph, request.method, planned, layer))


def runs_as_job(attention: PreparedAttention, settings: Settings) -> bool:
    """Many-pass methods, and any request estimated at ``settings.attention_job_gmacs`` or more, run in the
    background."""
    return attention.request.method in MANY_PASS or attention.estimated_macs >= settings.attention_job_gmacs * 1e9


AnyResponse = AttentionResponse | SequenceAttentionResponse | VolumeAttentionResponse


def compute_attention(attention: PreparedAttention, compute: Callable[[], AbstractContextManager[None]],
                      progress: Progress | None = None) -> AnyResponse:
    """Run the method and build the answer. With ``progress`` (a background job) the compute slot is given
    back between batches of passes (see ``run_method``)."""
    model, request = attention.model, attention.request
    gmacs = attention.estimated_macs / 1e9

    def lane() -> AbstractContextManager[None]:  # light work (a digit model's map) takes the light lane
        return compute(gmacs=gmacs)  # type: ignore[call-arg]

    result, elapsed_ms = run_method(model, attention.prepared.x, request, attention.max_macs, lane, progress)
    return response_of(model, attention.prepared, request, result, elapsed_ms)


def check_request(model: StoredModel, request: AttentionRequest) -> None:
    """Refuse, before the input is read, a method, layer or target class the model does not have."""
    if request.method not in METHODS:
        raise UnknownMethodError(request.method, list(METHODS))
    graph = model.graph
    if request.layer is not None:
        graph.node(request.layer)
    classes = graph.nodes[-1].output_shape  # (K,), or (K, *S) for a map of class scores
    if request.target is not None and 1 <= len(classes) <= 4 and request.target >= classes[0]:
        raise UnknownClassError(model.id, request.target, classes[0])


def method_arguments(model: StoredModel, request: AttentionRequest) -> tuple[str | None, dict[str, Any]]:
    """The layer (the model's CAM layer for a method that takes one) and the options ``explain`` gets."""
    method, layer = request.method, request.layer
    options: dict[str, Any] = {k: v for k, v in request.options.items() if v is not None}
    if method == "learned_attention" and model.bundle.attention_node:
        options["attention_node"] = model.bundle.attention_node
    if METHODS[method].uses_layer and layer is None:
        layer = model.bundle.cam_layer
    return layer, options


@contextmanager
def slot_per_batch(compute: Callable[[], AbstractContextManager[None]]) -> Iterator[Callable[[], None]]:
    """Hold a compute slot; the ``between()`` it yields gives the slot back, lets a queued request take it
    (``YIELD_SECONDS``), and waits for one again."""
    with ExitStack() as stack:
        held = [stack.enter_context(ExitStack())]
        held[0].enter_context(compute())

        def between() -> None:
            held[0].close()
            time.sleep(YIELD_SECONDS)
            held[0] = stack.enter_context(ExitStack())
            held[0].enter_context(compute())

        yield between


def run_method(model: StoredModel, x: np.ndarray, request: AttentionRequest, max_macs: int,
               compute: Callable[[], AbstractContextManager[None]], progress: Progress | None = None
               ) -> tuple[AttributionMap, float]:
    """The method's map on ``x`` and the milliseconds it took: many-pass defaults shrink to ``max_macs``; a map
    that overflowed is refused. Without ``progress`` one compute slot is held throughout; with it, a slot is held
    for each batch of passes and given back between batches, after ``progress`` is told."""
    method = request.method
    layer, options = method_arguments(model, request)
    with slot_per_batch(compute) as between:
        start = time.perf_counter()

        def report(done: int, total: int) -> None:
            assert progress is not None
            progress(done, total)
            if done < total:
                between()

        try:
            result = explain(model.graph, model.bundle.params, x, method, target=request.target, layer=layer,
                             max_macs=max_macs, progress=None if progress is None else report, **options)
        except np.linalg.LinAlgError as exc:  # an SVD (Eigen-CAM) of activations that overflowed
            raise overflow_error(model.id, f"in the activations {method} decomposes") from exc
        elapsed_ms = (time.perf_counter() - start) * 1000
    check_finite(model.id, np.asarray(result.layer_map, dtype=np.float64), f"in the {method} map")
    if result.score is not None:
        check_finite(model.id, np.asarray(result.score, dtype=np.float64), "in the class score")
    return result, elapsed_ms


def _numbers(values: np.ndarray, ndim: int) -> list:
    """``values`` as nested lists of ``ndim`` levels (a layer map of a 2D model may be 1D: one row), rounded."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != ndim:
        values = values.reshape((1,) * (ndim - values.ndim) + values.shape)
    return values.round(6).tolist()


def step_attention(result: AttributionMap, picture: np.ndarray | None) -> StepAttention | None:
    """The method's numbers per time step (``result.steps``), as a strip and, over an image's ``picture``, each
    position coloured by its step's number."""
    steps = result.steps
    if steps is None:
        return None
    strip = np.repeat(np.asarray(steps.normalized, dtype=np.float64)[None], STRIP_HEIGHT, axis=0)
    overlay = None
    if picture is not None and steps.input_map is not None and steps.input_map.shape == picture.shape[:2]:
        overlay = png_data_url(blend(picture, steps.input_map, steps.signed))
    return StepAttention(node=steps.node, values=_numbers(steps.values, 1), normalized=_numbers(steps.normalized, 1),
                         signed=steps.signed, rule=steps.rule, step_axis=steps.step_axis,
                         strip_png=png_data_url(colour(strip, steps.signed)), overlay_png=overlay)


def side_by_side(volume: np.ndarray) -> np.ndarray:
    """``(D, H, W, ...)`` -> ``(H, D·W, ...)``: the slices left to right."""
    return np.concatenate(list(volume), axis=1)


def response_of(model: StoredModel, prepared: PreparedInput, request: AttentionRequest, result: AttributionMap,
                elapsed_ms: float) -> AnyResponse:
    """The maps as numbers and PNGs, the upsampled map laid over the picture the model saw (an image's, or a
    volume's frames side by side; a sequence gets a coloured strip)."""
    kind = input_kind(model.graph)
    upsampled = np.asarray(result.input_map_normalized, dtype=np.float64)
    expected = tuple(model.graph.input_shape[1:])
    common: dict[str, Any] = dict(
        model_id=model.id, method=request.method, target=result.target,
        target_label=None if result.target is None else label_of(model, result.target), score=result.score,
        region=result.region, layer=result.layer, signed=result.signed, layer_shape=list(np.shape(result.layer_map)),
        input_shape=list(upsampled.shape), extras=jsonable(result.extras), elapsed_ms=elapsed_ms)
    if kind == "sequence":
        if upsampled.shape != expected:
            raise UnfitMapError(request.method, list(upsampled.shape), 1, expected[0])
        strip = np.repeat(upsampled[None], STRIP_HEIGHT, axis=0)
        return SequenceAttentionResponse(
            kind="sequence", **common, steps=step_attention(result, None), layer_map=_numbers(result.layer_map, 1),
            layer_map_normalized=_numbers(result.layer_map_normalized, 1),
            input_map=_numbers(upsampled, 1) if request.include_input_map else None,
            input_map_png=png_data_url(colour(strip, result.signed)), input_values=_numbers(prepared.x[0], 2))
    if kind == "volume":
        if upsampled.shape != expected:
            raise UnfitMapError(request.method, list(upsampled.shape), expected[1], expected[2])
        # (C, D, H, W) -> the frames (D, H, W, C) side by side (H, D·W, C) -> (C, H, D·W), min-max over the clip
        frames = picture_of(side_by_side(prepared.x[0].transpose(1, 2, 3, 0)).transpose(2, 0, 1), None)
        flat_map = side_by_side(upsampled)
        return VolumeAttentionResponse(
            kind="volume", **common, steps=step_attention(result, None), layer_map=_numbers(result.layer_map, 3),
            layer_map_normalized=_numbers(result.layer_map_normalized, 3),
            input_map=_numbers(upsampled, 3) if request.include_input_map else None,
            input_map_png=png_data_url(colour(flat_map, result.signed)),
            overlay_png=png_data_url(blend(frames, flat_map, result.signed)), picture_png=png_data_url(frames))
    picture = prepared.picture if prepared.picture is not None else picture_of(
        prepared.x[0], model.bundle.preprocessing if takes_images(model.graph) else None)
    if upsampled.ndim != 2 or upsampled.shape != picture.shape[:2]:
        raise UnfitMapError(request.method, list(upsampled.shape), picture.shape[0], picture.shape[1])
    return AttentionResponse(
        **common, steps=step_attention(result, picture), layer_map=_numbers(result.layer_map, 2),
        layer_map_normalized=_numbers(result.layer_map_normalized, 2),
        input_map=_numbers(upsampled, 2) if request.include_input_map else None,
        input_map_png=png_data_url(colour(upsampled, result.signed)),
        overlay_png=png_data_url(blend(picture, upsampled, result.signed)), picture_png=png_data_url(picture))
