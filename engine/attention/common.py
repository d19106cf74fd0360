"""What every attribution method shares: the target score, the layer, batched passes, normalisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.graph import Graph, Trace
from engine.layers.softmax import softmax_forward
from engine.ops.base import GLOBAL

#: ops whose output is a probability normalisation of the logits before it; attribution uses the logits
_NORMALISERS = {"softmax", "log_softmax"}


class AttributionError(EngineError):
    """An attribution that cannot be computed as asked (wrong layer, target, input or options)."""


@dataclass
class AttributionMap:
    """The result of one method.

    ``layer_map`` is at the chosen layer's resolution ``(h, w)`` (the input's for gradient methods);
    ``input_map`` is the same map bilinearly upsampled to the input ``(H, W)``. ``*_normalized`` are
    in [0, 1] (class activation maps: ReLU, then min-max) or, where ``signed``, in [-1, 1] (divided
    by the largest magnitude, so zero stays zero).
    """

    method: str
    target: int | None
    layer: str
    layer_map: np.ndarray
    layer_map_normalized: np.ndarray
    input_map: np.ndarray
    input_map_normalized: np.ndarray
    signed: bool
    score: float | None
    extras: dict[str, Any] = field(default_factory=dict)


#: ``progress(done, total)``: called by the many-pass methods after each batch of passes, with the inputs passed so
#: far and the number the method will pass in all (``done`` grows and ends at ``total``). It may raise to stop
#: the method between batches (a cheap cancel): the exception reaches ``explain``'s caller unchanged.
Progress = Callable[[int, int], None]


class PassCounter:
    """Counts the inputs a many-pass method has passed and reports them to ``progress`` (None: counts only)."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = int(total)
        self.done = 0
        self.progress = progress

    def __call__(self, passed: int) -> None:
        """``passed`` more inputs went through the network."""
        self.done += int(passed)
        if self.progress is not None:
            self.progress(self.done, self.total)


def score_node(graph: Graph) -> str:
    """The node whose value is the class score: the output, or the logits feeding a final softmax."""
    last = graph.nodes[-1]
    if last.op.op in _NORMALISERS:
        return last.inputs[0]
    return last.id


def check_single_input(graph: Graph, x: np.ndarray) -> None:
    graph.check_input(x)
    if x.shape[0] != 1:
        raise AttributionError(f"attribution explains one input at a time: got a batch of {x.shape[0]}")


def resolve_target(graph: Graph, logits: np.ndarray, target: int | None) -> int:
    """``target`` checked against the number of classes, or the top prediction when None."""
    classes = int(np.prod(logits.shape[1:]))
    if logits.ndim != 2:
        raise AttributionError(f"the score node has shape {list(logits.shape[1:])}: "
                               "attribution needs class scores (K,)")
    if target is None:
        return int(np.argmax(logits[0]))
    if not 0 <= int(target) < classes:
        raise AttributionError(f"target class {target} does not exist: this model has classes 0 to {classes - 1}")
    return int(target)


def spatial_dims(shape: tuple[int, ...]) -> int:
    """Spatial axes of a per-sample shape ``(C, *spatial)``."""
    return len(shape) - 1


def default_layer(graph: Graph) -> str:
    """The last node with 2D spatial extent that feeds an op mixing all positions (global pooling,
    flatten, attention pooling); failing that, the last node with 2D spatial extent."""
    candidates = [n for n in graph.nodes if spatial_dims(n.output_shape) == 2 and n.output_shape[0] > 1]
    if not candidates:
        raise AttributionError("this model has no layer with a 2D spatial extent to explain")
    for node in reversed(candidates):
        if any(graph.by_id[c].op.geometry() == GLOBAL and graph.by_id[c].inputs[0] == node.id
               for c in graph.consumers[node.id]):
            return node.id
    return candidates[-1].id


def resolve_layer(graph: Graph, layer: str | None) -> str:
    if layer is None:
        return default_layer(graph)
    if layer not in graph.by_id:
        raise AttributionError(f"no node '{layer}' in this model")
    if spatial_dims(graph.by_id[layer].output_shape) != 2:
        raise AttributionError(f"node '{layer}' has shape {list(graph.by_id[layer].output_shape)}: "
                               "class activation maps need a layer with 2D spatial extent (C, H, W)")
    return layer


def one_hot(logits: np.ndarray, target: int) -> np.ndarray:
    seed = np.zeros_like(logits)
    seed[:, target] = 1
    return seed


#: the activations one batch of passes may hold (bytes, every node's output). Beyond a few inputs a batch fits
#: no cache anyway, so a bigger one gains nothing per pass, holds more memory and suffers when other processes
#: compete for memory bandwidth. Measured on EfficientNet-Lite0 (79 MB per input, Integrated Gradients, 32
#: passes, one thread): batches of 4, 8 and 16 took 2.3 s on a quiet machine; under load 16 took 4-6 s, 4-8 still
#: 2.3. 512 MiB batches (6 inputs) peaked at ~1 GB resident in a lecture load; 256 MiB (3 inputs) keeps it lower.
BATCH_BYTES = 256 * 2**20


def effective_batch(graph: Graph, xs: np.ndarray, batch_size: int) -> int:
    """``batch_size``, or fewer inputs per batch where their activations would pass ``BATCH_BYTES``."""
    per_input = graph.activation_count() * xs.itemsize
    return max(1, min(int(batch_size), BATCH_BYTES // max(1, per_input)))


def input_gradients(graph: Graph, params: dict, xs: np.ndarray, target: int, batch_size: int = 16,
                    rule=None, passed: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """d score_target / d input for each input in ``xs: (B, *input_shape)``, in batches (``effective_batch``);
    ``passed(n)`` is told after each batch of ``n`` inputs.

    Returns ``(gradients (B, *input_shape), scores (B,))``.
    """
    node = score_node(graph)
    grads, scores = [], []
    batch_size = effective_batch(graph, xs, batch_size)
    for start in range(0, len(xs), batch_size):
        chunk = xs[start:start + batch_size]
        trace = graph.forward(chunk, params, stop_at=node)
        logits = trace.activations[node]
        scores.append(logits[:, target])
        grads.append(graph.backward(trace, {node: one_hot(logits, target)}, rule=rule, params=False).input)
        if passed is not None:
            passed(len(chunk))
    return np.concatenate(grads), np.concatenate(scores)


def target_scores(graph: Graph, params: dict, xs: np.ndarray, target: int, batch_size: int = 16,
                  probabilities: bool = False, passed: Callable[[int], None] | None = None) -> np.ndarray:
    """The target's score (or softmax probability) for each input in ``xs``, forward passes in batches;
    ``passed(n)`` is told after each batch of ``n`` inputs."""
    node = score_node(graph)
    out = []
    batch_size = effective_batch(graph, xs, batch_size)
    for start in range(0, len(xs), batch_size):
        logits = graph.forward(xs[start:start + batch_size], params, keep_caches=False, stop_at=node, keep=()).output
        if probabilities:
            out.append(softmax_forward(logits)[0][:, target])
        else:
            out.append(logits[:, target])
        if passed is not None:
            passed(len(logits))
    return np.concatenate(out)


def forward_with_layer(graph: Graph, params: dict, x: np.ndarray, target: int | None, layer: str
                       ) -> tuple[Trace, int, np.ndarray, np.ndarray]:
    """Forward, then backward from the target score down to ``layer`` only.

    Returns ``(trace, target, activations A (K, h, w), gradients dS/dA (K, h, w))``.
    """
    node = score_node(graph)
    trace = graph.forward(x, params, stop_at=node)
    logits = trace.activations[node]
    target = resolve_target(graph, logits, target)
    grads = graph.backward(trace, {node: one_hot(logits, target)}, stop_at=layer, params=False)
    if layer not in grads.activations:
        raise AttributionError(f"the score does not depend on node '{layer}'")
    return trace, target, trace.activations[layer][0], grads.activations[layer][0]


def normalize_unsigned(m: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (all zeros for a constant map)."""
    lo, hi = float(m.min()), float(m.max())
    return np.zeros_like(m) if hi - lo <= 1e-12 * max(abs(hi), 1.0) else (m - lo) / (hi - lo)


def normalize_signed(m: np.ndarray) -> np.ndarray:
    """Divide by the largest magnitude, to [-1, 1], so that zero stays zero and signs stay."""
    peak = float(np.abs(m).max())
    return np.zeros_like(m) if peak == 0 else m / peak


def normalize_cam(m: np.ndarray) -> np.ndarray:
    """As the CAM papers do: ReLU, then min-max to [0, 1]."""
    return normalize_unsigned(np.maximum(m, 0))


def input_hw(graph: Graph) -> tuple[int, int]:
    shape = graph.input_shape
    if len(shape) != 3:
        raise AttributionError(f"attention maps need an image input (C, H, W), this model takes {list(shape)}")
    return shape[1], shape[2]
