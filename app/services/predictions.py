"""Class scores from a model's output: softmax (unless the model ends in one) and the top k with labels."""

from __future__ import annotations

import numpy as np

from app.errors import ApiError
from app.schemas.models import ClassScore
from app.services.models import StoredModel
from engine.layers.softmax import softmax_forward


def ends_in_softmax(model: StoredModel) -> bool:
    return model.graph.spec["nodes"][-1].get("op") == "softmax"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities of one output ``(K,)``, in float64, by the engine's softmax."""
    return softmax_forward(logits.astype(np.float64)[None])[0][0]


def label_of(model: StoredModel, index: int) -> str:
    labels = model.bundle.labels
    return labels[index] if 0 <= index < len(labels) else f"class {index}"


def top_classes(model: StoredModel, output: np.ndarray, k: int) -> list[ClassScore]:
    """The ``k`` most probable classes of one sample's output ``(K,)``."""
    if output.ndim != 1:
        raise ApiError(422, f"model '{model.id}' outputs shape {list(output.shape)}, not a vector of class scores: "
                            "use /activations or /forward to see its output")
    probabilities = output.astype(np.float64) if ends_in_softmax(model) else softmax(output)
    order = np.argsort(-probabilities, kind="stable")[: min(k, output.shape[0])]
    return [ClassScore(index=int(i), label=label_of(model, int(i)), probability=float(probabilities[i]),
                       logit=float(output[i])) for i in order]
