"""Backpropagation made visible, for the routes: the gradients of one run against one label, kept like runs, and the
answers built from them (every node's gradient, the chain rule at one unit, one SGD step).

**Why a store, not tiles in the answer.** EfficientNet-Lite0's gradients are as large as its activations: 143 nodes,
20 M values (80 MB of float32, about 20 MB of PNG). Inlining every map would make one answer of tens of MB; so the
POST answers with per-node statistics and URLs, and the maps are fetched per node, when the page shows that node,
exactly as the explorer fetches feature maps. The gradients are identified by the run (a content hash of the model,
its weights' version and the input, whose input every worker can read back from disk) and the label:
``/api/backprop/{run_id}/labels/{label}/nodes/{node}.png``. Each worker keeps recent ones in memory (bounded by count
and bytes, least recently used dropped first) with the PNGs it encoded; a worker that has not got them recomputes
them from the run (one forward and one backward pass: under 0.3 s for EfficientNet-Lite0 on this machine).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import ApiError
from app.schemas.backprop import GradientNode
from app.schemas.models import ClassScore
from app.schemas.runs import TileLayout
from app.services.compute import forward_gmacs, unbounded
from app.services.finite import overflow_error
from app.services.models import StoredModel
from app.services.predictions import label_of
from app.services.runs import Run, node_op
from app.services.single_flight import KeyedLocks
from app.services.tiles import Scale, as_channels, encode_png, tile_layout
from engine.graph import Trace
from engine.learned.backprop import Backprop, backpropagate, check_label, gradient_summary
from engine.learned.weight_gradient import filter_ops
from engine.training import logits_node

#: a backward pass costs about twice its forward pass: the work of a forward and a backward, for the compute lane
BACKPROP_PASSES = 3.0


@dataclass
class Gradients:
    """One run's gradients against one label (every node's output and every trainable parameter), the loss, and
    the PNGs encoded from them so far."""

    run_id: str
    label: int
    logits_node: str
    loss: float
    logits: np.ndarray
    probabilities: np.ndarray
    order: list[str]
    nodes: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    elapsed_ms: float
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    pngs: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    png_bytes: int = 0
    array_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.array_bytes = sum(a.nbytes for a in (*self.nodes.values(), *self.params.values()))

    @property
    def nbytes(self) -> int:
        return self.array_bytes + self.png_bytes

    def backprop(self, run: Run) -> Backprop:
        """The engine's view, with the run's activations (the same forward pass)."""
        return Backprop(label=self.label, logits_node=self.logits_node, loss=self.loss, logits=self.logits,
                        probabilities=self.probabilities, trace=Trace(run.activations, output_id=self.logits_node),
                        gradients=self.nodes, param_gradients=self.params, order=self.order)

    def summary(self, node_id: str) -> dict[str, float]:
        if node_id not in self.stats:
            self.stats[node_id] = gradient_summary(self.nodes[node_id])
        return self.stats[node_id]


def resolve_label(model: StoredModel, run: Run, label: int | None) -> tuple[int, bool]:
    """The label asked for (422 outside the model's classes), or the model's prediction; and whether it was that."""
    node = logits_node(model.graph)
    if label is None:
        check_label(model.graph, 0)  # a classifier (a vector of class scores), else a ShapeError (422)
        return int(np.argmax(run.activations[node][0])), True
    return check_label(model.graph, label), False


class GradientStore:
    """Gradients in memory per worker (LRU: at most ``max_entries`` and ``max_bytes``), computed from runs."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 256 * 1024 * 1024,
                 compute: Callable[..., AbstractContextManager[None]] = unbounded) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.compute = compute
        self._entries: OrderedDict[tuple[str, int], Gradients] = OrderedDict()
        self._flights = KeyedLocks()
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, int]) -> Gradients | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def _remember(self, entry: Gradients) -> None:
        with self._lock:
            self._entries[(entry.run_id, entry.label)] = entry
            self._entries.move_to_end((entry.run_id, entry.label))
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used until the rest fit (the newest stays); hold ``_lock``."""
        total = sum(e.nbytes for e in self._entries.values())
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes

    def get(self, model: StoredModel, run: Run, label: int) -> tuple[Gradients, bool]:
        """The run's gradients against ``label`` and whether they were kept from before; computed once however many
        identical requests arrive together."""
        key = (run.run_id, label)
        found = self._cached(key)
        if found is not None:
            return found, True
        with self._flights.hold(key):
            found = self._cached(key)
            if found is not None:
                return found, True
            entry = self._compute(model, run, label)
            self._remember(entry)
            return entry, False

    def _compute(self, model: StoredModel, run: Run, label: int) -> Gradients:
        with self.compute(gmacs=BACKPROP_PASSES * forward_gmacs(model.graph)):
            start = time.perf_counter()
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is answered with a 422 below
                result = backpropagate(model.graph, model.bundle.params, run.input, label)
            elapsed = (time.perf_counter() - start) * 1000
        if not math.isfinite(result.loss):
            raise overflow_error(model.id, "in its logits, so the loss is not finite")
        for node_id in result.order:
            if not np.all(np.isfinite(result.gradients[node_id])):
                raise overflow_error(model.id, f"in the gradient of node '{node_id}'")
        return Gradients(run_id=run.run_id, label=label, logits_node=result.logits_node, loss=result.loss,
                         logits=result.logits, probabilities=result.probabilities, order=result.order,
                         nodes=result.gradients, params=result.param_gradients, elapsed_ms=elapsed)

    def png(self, entry: Gradients, node_id: str, scale: Scale, time_axis: int | None) -> tuple[bytes, str]:
        """The node's gradient as a signed tiled PNG and its layout (JSON, without ranges), encoded once."""
        key = (node_id, scale)
        found = entry.pngs.get(key)
        if found is not None:
            return found
        png, layout = signed_png(entry.nodes[node_id][0], scale, time_axis)
        found = png, json.dumps(layout.model_dump(exclude={"ranges"}))
        with self._lock:
            if entry.nbytes + len(png) <= self.max_bytes:
                entry.pngs[key] = found
                entry.png_bytes += len(png)
                self._evict()
        return found


# --- maps -----------------------------------------------------------------------------------------------------------
def signed_ranges(maps: np.ndarray, scale: Scale) -> np.ndarray:
    """Per tile of ``maps: (tiles, H, W)``, the ``m`` of the signed range ``[−m, +m]``: the tile's (or the node's)
    largest |value|; 1 for a map of zeros (so that it is drawn white, not at the scale's end)."""
    largest = np.abs(maps).max(axis=(1, 2)) if maps.size else np.zeros(len(maps), dtype=np.float32)
    if scale == "layer":
        largest = np.full(len(maps), largest.max() if len(largest) else 0.0, dtype=np.float32)
    return np.where(largest > 0, largest, np.float32(1.0)).astype(np.float32)


def signed_png(gradient: np.ndarray, scale: Scale = "layer", time_axis: int | None = None) -> tuple[bytes, TileLayout]:
    """``gradient``: one sample, e.g. (C, H, W). The tiled greyscale PNG whose grey 0, 128 and 255 stand for −m, 0
    and +m (``signed_ranges``), and its layout with each tile's [−m, +m]."""
    maps = as_channels(np.asarray(gradient, dtype=np.float32), time_axis)
    m = signed_ranges(maps, scale)
    layout = tile_layout(tuple(gradient.shape), np.stack([-m, m], axis=1).tolist(), scale, time_axis)
    return encode_png(maps, -m, m, layout), layout


def gradient_url(run_id: str, label: int, node_id: str) -> str:
    return f"/api/backprop/{run_id}/labels/{label}/nodes/{node_id}"


def gradient_nodes(model: StoredModel, run: Run, entry: Gradients) -> list[GradientNode]:
    """Every node's gradient summary, in backward order."""
    graph = model.graph
    filters = set(filter_ops(graph))
    nodes = []
    for node_id in entry.order:
        base = gradient_url(run.run_id, entry.label, node_id)
        op = node_op(graph, node_id)
        shape = list(entry.nodes[node_id].shape[1:])
        nodes.append(GradientNode(id=node_id, op=op, shape=shape, **entry.summary(node_id), png_url=f"{base}.png",
                                  npy_url=f"{base}.npy", json_url=f"{base}.json",
                                  activation_png_url=f"/api/runs/{run.run_id}/nodes/{node_id}.png",
                                  filters=shape[0] if node_id in filters else None,
                                  time_axis=run.time_axes.get(node_id)))
    return nodes


def class_score(model: StoredModel, entry: Gradients, index: int) -> ClassScore:
    return ClassScore(index=index, label=label_of(model, index), probability=float(entry.probabilities[index]),
                      logit=float(entry.logits[index]))


def top_scores(model: StoredModel, entry: Gradients, k: int) -> list[ClassScore]:
    order = np.argsort(-entry.probabilities, kind="stable")[:k]
    return [class_score(model, entry, int(i)) for i in order]


def gradient_of(entry: Gradients, node_id: str) -> np.ndarray:
    """The node's gradient; 404 naming the nodes that have one (those the loss depends on)."""
    found = entry.nodes.get(node_id)
    if found is None:
        raise ApiError(404, f"no gradient for node '{node_id}': the loss depends on {', '.join(entry.order[:40])}"
                            f"{' ...' if len(entry.order) > 40 else ''}")
    return found


# --- bounds on what a request may ask ------------------------------------------------------------------------------
MAX_RATES = 25
MAX_RATE = 1e4
MAX_FILTER_VALUES = 65_536
#: the rates swept when none are given: half decades from 1e-4 to 1e3, where a step is too small to see, right, and
#: far too large for the digit models' filters
DEFAULT_RATES = [round(10.0 ** (e / 2), 12) for e in range(-8, 7)]


def parse_rates(text: str | None) -> list[float]:
    """``"0.001,0.01,0.1"`` as learning rates (422 for anything else); None: ``DEFAULT_RATES``."""
    if text is None:
        return list(DEFAULT_RATES)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        rates = [float(p) for p in parts]
    except ValueError:
        raise ApiError(422, f"lrs must be learning rates separated by commas, e.g. lrs=0.001,0.01,0.1; got "
                            f"'{text[:60]}'") from None
    if not rates or len(rates) > MAX_RATES:
        raise ApiError(422, f"lrs lists {len(rates)} rates: give from 1 to {MAX_RATES} (each is one more forward "
                            "pass)")
    bad = [r for r in rates if not (math.isfinite(r) and 0 < r <= MAX_RATE)]
    if bad:
        raise ApiError(422, f"learning rate {bad[0]:g} is outside (0, {MAX_RATE:g}]: every rate must be positive, at "
                            f"most {MAX_RATE:g}")
    return rates


def check_filter_size(model: StoredModel, node_id: str) -> None:
    """422 for a filter too large to send as numbers (an uploaded model's huge fully connected layer)."""
    size = math.prod(model.graph.param_shapes()[f"{node_id}.weight"][1:])
    if size > MAX_FILTER_VALUES:
        raise ApiError(422, f"a filter of node '{node_id}' holds {size:,} weights, more than the {MAX_FILTER_VALUES:,} "
                            "this answer lists: pick a smaller layer")


def floats(a: np.ndarray) -> list[float]:
    """An array as a flat list of Python floats, C order."""
    return np.asarray(a, dtype=np.float64).reshape(-1).tolist()


def finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def outcome_fields(model: StoredModel, loss_before: float, outcome: Any) -> dict[str, Any]:
    """A step's outcome as the API answers it: overflowed numbers as null, ``diverged`` true."""
    loss = finite_or_none(outcome.loss_after)
    probability = finite_or_none(outcome.label_probability)
    diverged = loss is None or probability is None
    prediction = None if diverged else outcome.prediction
    return {"lr": outcome.lr, "loss_after": loss, "predicted_loss": outcome.predicted_loss,
            "loss_change": None if loss is None else loss - loss_before, "label_probability": probability,
            "prediction": prediction, "prediction_label": None if prediction is None else label_of(model, prediction),
            "diverged": diverged}
