"""Feature visualisation as an analysis job: check the request against the model, then optimise the picture in the
background (``engine.learned.feature_vis``), writing previews as it improves, and keep the result on disk.

The reference the result is compared with: for models that read the shipped digits, the objective's mean over the
2,000 held-out digits; for other image models, over the sample photos (``static/samples/*.jpg``) prepared by the
model's own preprocessing at the picture's size.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.imaging import load_image_file
from app.schemas.feature_vis import FeatureVisRequest
from app.services.analysis_jobs import AnalysisJobs, AnalysisTask, JobContext
from app.services.errors import UnusableRequestError
from app.services.finite import check_finite
from app.services.models import StoredModel
from app.services.top_examples import takes_shipped_digits
from engine.datasets import mnist
from engine.errors import ShapeError
from engine.graph import Graph
from engine.learned.feature_vis import (
    FeatureVisConfig,
    FeatureVisResult,
    graph_at_size,
    image_shape,
    objective_values,
    picture_uint8,
    visualise,
)
from engine.learned.objectives import Objective, channel_objective, class_objective, unit_objective
from engine.models.bundle import Preprocessing
from engine.training import logits_node

KIND = "feature-visualisation"
#: part of every job's key: a change to the method that changes its pictures changes this, so old results are not
#: served for new requests
METHOD_VERSION = 1
#: previews written per job (about): the page shows the picture improving
PREVIEWS = 16
PHOTO_SUFFIXES = (".jpg", ".jpeg")


class FeatureVisError(UnusableRequestError):
    """A request this model cannot answer (422): not an image model, a size it cannot take, a node mismatch."""


@dataclass(frozen=True)
class Plan:
    """A checked request: the network at the picture's size, the objective, and what the job's key holds."""

    model: StoredModel
    request: FeatureVisRequest
    graph: Graph
    objective: Objective
    preprocessing: Preprocessing

    @property
    def resized(self) -> bool:
        return self.graph is not self.model.graph

    @property
    def key(self) -> dict[str, Any]:
        r = self.request
        return {"method": METHOD_VERSION, "node": self.objective.node, "kind": self.objective.kind,
                "index": list(self.objective.index), "steps": r.steps, "seed": r.seed,
                "learning_rate": r.learning_rate, "input_shape": list(self.graph.input_shape)}


def plan(model: StoredModel, request: FeatureVisRequest) -> Plan:
    """Check ``request`` against ``model`` (UnknownNodeError: 404 listing the nodes; ShapeError or
    FeatureVisError: 422 saying what would work) and build what the job needs."""
    try:
        _, height, width = image_shape(model.graph)
    except ShapeError as exc:
        raise FeatureVisError(f"model '{model.id}' cannot be visualised this way: {exc}") from None
    graph = model.graph
    if request.size is not None and (request.size, request.size) != (height, width):
        if request.size > min(height, width):
            raise FeatureVisError(f"size {request.size} is larger than the model's own input ({height} × {width}): "
                              f"use {min(height, width)} or less, or omit size")
        if takes_shipped_digits(model):
            raise FeatureVisError(f"model '{model.id}' reads the shipped digits, which are {height} × {width}: its "
                              "pictures are drawn at that size, where the digits give the reference; omit size")
        graph = graph_at_size(graph, model.bundle.params, request.size, request.size)
    if request.class_index is not None:
        logits = logits_node(graph)
        if request.node is not None and request.node != logits:
            graph.node(request.node)  # an unknown node is a 404 first
            raise FeatureVisError(f"class_index reads the logits node '{logits}', not '{request.node}': omit node, "
                              f"or ask for a channel of '{request.node}'")
        objective = class_objective(graph, request.class_index)
    elif request.unit is not None:
        objective = unit_objective(graph, request.node, tuple(request.unit))
    else:
        objective = channel_objective(graph, request.node, request.channel)
    return Plan(model, request, graph, objective, _preprocessing_at(model.bundle.preprocessing,
                                                                    graph.input_shape[1]))


def _preprocessing_at(preprocessing: Preprocessing, size: int) -> Preprocessing:
    """The model's preprocessing for ``size``-pixel inputs, with the same resize-to-crop ratio (256 / 224 for
    EfficientNet): it prepares the sample photos of the reference."""
    if preprocessing.crop == size:
        return preprocessing
    resize = round(size * preprocessing.resize / preprocessing.crop) if preprocessing.crop > 0 else size
    return replace(preprocessing, resize=resize, crop=size)


def task_for(plan_: Plan, samples: Path) -> AnalysisTask:
    """The analysis job of a checked request (``samples``: the directory of the sample photos)."""
    return AnalysisTask(kind=KIND, model_id=plan_.model.id, version=plan_.model.version, key=plan_.key,
                        run=lambda ctx: compute(plan_, samples, ctx))


def find_or_start(plan_: Plan, samples: Path, jobs: AnalysisJobs,
                  background: Callable[[], AbstractContextManager[None]],
                  owner: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(result, None)`` when an identical request was computed, else ``(None, the job's status)`` (started now if
    nobody had asked)."""
    task = task_for(plan_, samples)
    cached = jobs.cached_result(task)
    if cached is not None:
        return cached, None
    status = jobs.submit(task, background, owner=owner)
    if status["status"] == "done":
        cached = jobs.cached_result(task)
        if cached is not None:
            return cached, None
    return None, status


# --- the job ---------------------------------------------------------------------------------------------------

def png_bytes(pixels: np.ndarray) -> bytes:
    """pixels: (C, H, W) in [0, 1], C = 1 or 3 -> a grey or RGB PNG."""
    picture = picture_uint8(pixels)
    buffer = io.BytesIO()
    Image.fromarray(picture[:, :, 0] if picture.shape[2] == 1 else picture).save(buffer, format="PNG")
    return buffer.getvalue()


def compute(plan_: Plan, samples: Path, ctx: JobContext) -> dict[str, Any]:
    """Optimise the picture (previews as it improves), then measure the reference and write the files."""
    request, model = plan_.request, plan_.model
    every = max(1, request.steps // PREVIEWS)

    def progress(done: int, total: int, pixels: np.ndarray) -> None:
        ctx.progress(done, total + 1)  # the last step: the reference inputs
        if done % every == 0 and done < total:
            ctx.preview("preview.png", png_bytes(pixels))

    config = FeatureVisConfig(steps=request.steps, learning_rate=request.learning_rate, seed=request.seed)
    started = time.perf_counter()
    result = visualise(plan_.graph, model.bundle.params, plan_.objective, plan_.preprocessing, config, progress)
    seconds = time.perf_counter() - started
    check_finite(model.id, np.array([result.start, result.end, *result.history]), "while the picture was optimised")
    ctx.preview("preview.png", png_bytes(result.pixels))
    reference = measure_reference(plan_, samples)
    ctx.progress(request.steps + 1, request.steps + 1)
    return answer(plan_, result, reference, seconds, ctx.write_file("image.png", png_bytes(result.pixels)),
                  ctx.write_npy("input.npy", result.model_input))


def measure_reference(plan_: Plan, samples: Path) -> dict[str, Any]:
    """The objective on real inputs: the held-out digits, or the sample photos at the picture's size."""
    model, graph, params = plan_.model, plan_.graph, plan_.model.bundle.params
    if takes_shipped_digits(model):
        x, _ = mnist.load_mnist("test")
        source, description = "digits", f"the {len(x):,} held-out shipped digits (engine.datasets.mnist, test split)"
    else:
        photos = sorted(p for p in samples.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            raise FeatureVisError(f"no sample photos in {samples.name}/ to compare the picture with")
        pre = plan_.preprocessing
        x = np.concatenate([pre.normalize(load_image_file(p, pre)) for p in photos]).astype(np.float32)
        source = "photos"
        description = (f"the {len(photos)} sample photos ({', '.join(p.name for p in photos)}) through the model's "
                       f"preprocessing at {graph.input_shape[1]} × {graph.input_shape[2]}")
    values = objective_values(graph, params, plan_.objective, x)
    check_finite(model.id, values, "on the reference inputs")
    return {"source": source, "description": description, "count": len(values), "mean": float(values.mean()),
            "max": float(values.max())}


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 and math.isfinite(value / reference) else None


def answer(plan_: Plan, result: FeatureVisResult, reference: dict[str, Any], seconds: float, image_url: str,
           input_url: str) -> dict[str, Any]:
    """The job's result, the ``FeatureVisualisation`` schema's fields."""
    objective, model = plan_.objective, plan_.model
    labels = model.bundle.labels
    return {
        "model_id": model.id,
        "objective": {
            "kind": objective.kind, "node": objective.node, "description": objective.describe(),
            "channel": objective.index[0] if objective.kind == "channel" else None,
            "unit": list(objective.index) if objective.kind == "unit" else None,
            "class_index": objective.index[0] if objective.kind == "class" else None,
            "label": (labels[objective.index[0]] if objective.kind == "class" and objective.index[0] < len(labels)
                      else None)},
        "steps": plan_.request.steps, "seed": plan_.request.seed, "learning_rate": result.learning_rate,
        "input_shape": list(plan_.graph.input_shape), "resized": plan_.resized,
        "start": result.start, "end": result.end, "history": result.history,
        "reference": reference, "ratio": _ratio(result.end, reference["mean"]),
        "ratio_to_best": _ratio(result.end, reference["max"]),
        "image_url": image_url, "input_npy_url": input_url, "seconds": round(seconds, 3),
    }
