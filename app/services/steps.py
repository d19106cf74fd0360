"""A run's time steps: the fields that say which axis of a node is time, and GET .../nodes/{node_id}/steps (every
step's states and gates of a recurrent node, the prediction so far, or an attention node's weights). The numbers
are the engine's (``engine.time_steps``); this module bounds and labels them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.errors import ApiError
from app.schemas.models import ClassScore
from app.schemas.steps import AttentionSteps, RecurrentSteps, StepArray, StepPrediction, StepPredictions
from app.services.models import StoredModel
from app.services.predictions import label_of
from app.services.runs import Run
from engine.errors import ShapeError
from engine.graph import INPUT, Graph, Trace
from engine.time_steps import (
    GATE_TITLES,
    SEQUENCE_OPS,
    head_refusal,
    record_steps,
    sequence_input_shape,
    step_predictions,
)

#: the most numbers one answer lists (about 1 MB of JSON); beyond it, fewer units per array
MAX_STEP_VALUES = 65_536


def steps_url(run_id: str, node_id: str) -> str:
    return f"/api/runs/{run_id}/nodes/{node_id}/steps"


def sequence_fields(run: Run, graph: Graph, node_id: str, shape: list[int]) -> dict[str, Any]:
    """``time_axis``, ``per_step_shape`` and ``steps_url`` of a node's activation (``shape``: no batch axis)."""
    axis = run.time_axes.get(node_id)
    node = graph.by_id.get(node_id)
    recorded = node is not None and node.op.op in SEQUENCE_OPS
    per_step = None if axis is None else [n for i, n in enumerate(shape) if i != axis]
    return {"time_axis": axis, "per_step_shape": per_step,
            "steps_url": steps_url(run.run_id, node_id) if recorded else None}


def _rounded(values: np.ndarray) -> list:
    """float32 numbers as JSON, to 7 significant digits (their own precision)."""
    return [[float(f"{v:.7g}") for v in row] for row in np.asarray(values, dtype=np.float64)]


def node_steps(run: Run, model: StoredModel, node_id: str, first_unit: int = 0, units: int | None = None,
               top_k: int = 3) -> RecurrentSteps | AttentionSteps:
    """Every step of ``node_id`` in ``run``: see ``app.schemas.steps``. 422 for a node that records no steps."""
    graph = model.graph
    node = None if node_id == INPUT else graph.node(node_id)
    if node is None or node.op.op not in SEQUENCE_OPS:
        recorded_nodes = [n.id for n in graph.nodes if n.op.op in SEQUENCE_OPS]
        where = (f"this model's: {', '.join(recorded_nodes)}" if recorded_nodes else "this model has none")
        what = "the model's input" if node is None else f"a {node.op.op}"
        raise ApiError(422, f"node '{node_id}' is {what}: per-step states are recorded for "
                            f"{', '.join(SEQUENCE_OPS)} nodes ({where})")
    trace = Trace(run.activations)
    recorded = record_steps(graph, model.bundle.params, trace, node_id)
    steps, _ = sequence_input_shape(graph, node)
    common = {"run_id": run.run_id, "model_id": model.id, "node": node_id, "op": node.op.op,
              "sequence_node": node.inputs[0], "steps": steps}
    if node.op.op == "sequence_attention":
        weights = recorded["weights"].astype(np.float64)
        return AttentionSteps(kind="attention", **common, score=node.op.attrs["score"],
                              scores=_rounded(recorded["scores"][None])[0], weights=_rounded(weights[None])[0],
                              weights_sum=math.fsum(weights.tolist()))
    attrs = node.op.attrs
    hidden = attrs["hidden_size"]
    if not 0 <= first_unit < hidden:
        raise ApiError(422, f"first_unit {first_unit} is outside the {hidden} units of '{node_id}': give 0 to "
                            f"{hidden - 1}")
    fit = max(1, MAX_STEP_VALUES // (steps * len(recorded)))
    count = min(hidden - first_unit, fit, units if units is not None else fit)
    arrays = []
    for name, values in recorded.items():
        quantity, rest = name.split("_l", 1)
        layer, _, reverse = rest.partition("_")
        arrays.append(StepArray(name=name, quantity=quantity, title=GATE_TITLES.get(quantity, "cell state"),
                                layer=int(layer), direction="reverse" if reverse else "forward",
                                values=_rounded(values[:, first_unit:first_unit + count])))
    return RecurrentSteps(kind="recurrent", **common, cell=node.op.op, hidden_size=hidden,
                          num_layers=attrs["num_layers"], directions=2 if attrs["bidirectional"] else 1,
                          output=attrs["output"], first_unit=first_unit, unit_count=count,
                          truncated=count < hidden - first_unit or first_unit > 0, arrays=arrays,
                          predictions=predictions_of(model, node_id, recorded, top_k))


def predictions_of(model: StoredModel, node_id: str, recorded: dict[str, np.ndarray], top_k: int) -> StepPredictions:
    """The head applied to the states after each step (``engine.time_steps.step_predictions``), top ``top_k``."""
    graph = model.graph
    reason = head_refusal(graph, node_id)
    if reason is not None:
        return StepPredictions(available=False, reason=reason)
    try:
        found = step_predictions(graph, model.bundle.params, recorded, node_id)
    except ShapeError as err:  # the engine refuses what head_refusal let through: say it, never a 500
        return StepPredictions(available=False, reason=str(err))
    final = "h_n" if found.state == "h" else "c_n"
    how = (f"{final} replaced by {found.state} after step t (every layer), then {' -> '.join(found.head)} and a "
           "softmax: what the model outputs having read steps 0..t; the last is the run's own prediction")
    per_step = []
    for t, (logits, probabilities) in enumerate(zip(found.logits, found.probabilities)):
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        per_step.append(StepPrediction(step=t, classes=[
            ClassScore(index=int(i), label=label_of(model, int(i)), probability=float(probabilities[i]),
                       logit=float(logits[i])) for i in order]))
    return StepPredictions(available=True, state=found.state, head=found.head, how=how, steps=per_step)
