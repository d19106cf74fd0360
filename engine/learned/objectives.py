"""What feature visualisation maximises: one channel's mean activation, one unit, or one class's logit.

Lucid's ``objectives.channel`` (the mean of a channel over its positions), ``objectives.neuron`` (one position)
and a class logit (the pre-softmax score: maximising the probability instead can be done by lowering the
other classes, Simonyan, Vedaldi & Zisserman 2014). Each objective gives its value per sample and the seed
gradient d(objective)/d(activation) the graph's backward pass starts from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.errors import ShapeError
from engine.graph import Graph
from engine.time_steps import time_axes
from engine.training import logits_node

ObjectiveKind = Literal["channel", "unit", "class"]


@dataclass(frozen=True)
class Objective:
    """``kind`` "channel": the mean over every position of channel ``index[0]`` (axis 1) of ``node``;
    "unit": the one value ``activation[n, *index]``; "class": logit ``index[0]`` of the logits node."""

    node: str
    kind: ObjectiveKind
    index: tuple[int, ...]

    def describe(self) -> str:
        if self.kind == "channel":
            return f"the mean activation of channel {self.index[0]} of '{self.node}'"
        if self.kind == "unit":
            return f"unit {list(self.index)} of '{self.node}'"
        return f"the logit of class {self.index[0]} (node '{self.node}', before any softmax)"

    def value(self, activation: np.ndarray) -> np.ndarray:
        """activation: (N, ...) -> (N,) float64, the objective per sample."""
        if self.kind == "unit":
            return activation[(slice(None), *self.index)].astype(np.float64)
        selected = activation[:, self.index[0]]
        return selected.reshape(len(activation), -1).mean(axis=1, dtype=np.float64)

    def seed(self, activation: np.ndarray) -> np.ndarray:
        """d(sum over the batch of the objective) / d(activation): same shape as ``activation``."""
        seed = np.zeros_like(activation)
        if self.kind == "unit":
            seed[(slice(None), *self.index)] = 1
        else:
            positions = math.prod(activation.shape[2:])
            seed[:, self.index[0]] = 1 / positions
        return seed


def channel_objective(graph: Graph, node: str, channel: int) -> Objective:
    """Channel ``channel`` of ``node`` (axis 1 of its activation); UnknownNodeError or ShapeError if there is none."""
    shape = graph.node(node).output_shape
    if node in time_axes(graph):
        raise ShapeError(f"node '{node}' is a sequence of {shape[0]} steps × {shape[1]} features, not channels: "
                         f"ask for one unit [step, feature] of it, or a class")
    if not 0 <= channel < shape[0]:
        raise ShapeError(f"node '{node}' has {shape[0]} channels (0 to {shape[0] - 1}); channel {channel} is outside")
    return Objective(node, "channel", (channel,))


def unit_objective(graph: Graph, node: str, unit: tuple[int, ...]) -> Objective:
    """One unit ``unit`` (an index without the batch axis, e.g. (c, y, x)) of ``node``."""
    shape = graph.node(node).output_shape
    if len(unit) != len(shape) or any(not 0 <= i < n for i, n in zip(unit, shape)):
        ranges = ", ".join(f"0..{n - 1}" for n in shape)
        raise ShapeError(f"unit {list(unit)} is outside node '{node}' of shape {list(shape)}: "
                         f"give {len(shape)} indices in {ranges}")
    return Objective(node, "unit", tuple(unit))


def class_objective(graph: Graph, class_index: int) -> Objective:
    """The logit (pre-softmax score) of ``class_index``, read at :func:`engine.training.logits_node`."""
    node = logits_node(graph)
    shape = graph.node(node).output_shape
    if len(shape) != 1:
        raise ShapeError(f"the output '{node}' has shape {list(shape)}, not one score per class")
    if not 0 <= class_index < shape[0]:
        raise ShapeError(f"the model has {shape[0]} classes (0 to {shape[0] - 1}); class {class_index} is outside")
    return Objective(node, "class", (class_index,))
