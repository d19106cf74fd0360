"""What every attribution method shares: the kinds of input and output it explains, the target score, the layer,
batched passes, normalisation.

Inputs have one, two or three spatial axes: a sequence ``(C, L)`` (audio, a Conv1d network), an image
``(C, H, W)``, a volume ``(C, D, H, W)`` (a video clip, a Conv3d network). Maps have the input's spatial shape.
Outputs are class scores ``(K,)``, or a map of class scores ``(K, *S)`` (segmentation): there the target's score
is the sum of its logits over a region of the map (see ``resolve_region``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import EngineError
from engine.graph import Graph, Trace
from engine.layers.softmax import softmax_forward
from engine.ops.base import GLOBAL

if TYPE_CHECKING:
    from engine.attention.steps import StepValues

#: ops whose output is a probability normalisation of the logits before it; attribution uses the logits
_NORMALISERS = {"softmax", "log_softmax"}


class AttributionError(EngineError):
    """An attribution that cannot be computed as asked (wrong layer, target, input or options)."""


@dataclass
class AttributionMap:
    """The result of one method.

    ``layer_map`` is at the chosen layer's resolution ``(l,)``, ``(h, w)`` or ``(d, h, w)`` (the input's for
    gradient methods); ``input_map`` is the same map upsampled to the input's spatial shape (linear, bilinear or
    trilinear interpolation). ``*_normalized`` are in [0, 1] (class activation maps: ReLU, then min-max) or, where
    ``signed``, in [-1, 1] (divided by the largest magnitude, so zero stays zero). ``region`` is the box of a map
    output whose logits made the score, ``[starts..., ends...]`` (None: class scores, or the whole map).
    ``steps``: one number per time step, for a model that reads a sequence (``engine.attention.steps``: learned
    attention over a ``sequence_attention`` node, and saliency and gradient × input per step); None otherwise.
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
    region: list[int] | None = None
    steps: StepValues | None = None


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


#: the inputs attention maps explain, by their number of spatial axes: (name, per-sample shape in letters)
INPUT_KINDS = {1: ("sequence", "(C, L)"), 2: ("image", "(C, H, W)"), 3: ("volume", "(C, D, H, W)")}
#: a box's axis names, by the number of spatial axes (as the region option spells them)
_BOX_AXES = {1: ("l",), 2: ("y", "x"), 3: ("d", "y", "x")}


def input_kind(graph: Graph) -> str:
    """``"sequence"``, ``"image"`` or ``"volume"``: the input's spatial axes, or AttributionError naming what works."""
    shape = graph.input_shape
    if len(shape) - 1 not in INPUT_KINDS:
        axes = "no spatial axis" if len(shape) == 1 else f"{len(shape) - 1} spatial axes"
        raise AttributionError(f"attention maps need an input with 1, 2 or 3 spatial axes: a sequence (C, L) such as "
                               f"audio, an image (C, H, W) or a volume (C, D, H, W) such as a video clip; this model "
                               f"takes {list(shape)} ({axes}), so no method can explain it")
    return INPUT_KINDS[len(shape) - 1][0]


def input_size(graph: Graph) -> tuple[int, ...]:
    """The input's spatial shape ``(L,)``, ``(H, W)`` or ``(D, H, W)``: the shape of every ``input_map``."""
    input_kind(graph)
    return tuple(graph.input_shape[1:])


def output_kind(graph: Graph) -> str:
    """``"classes"`` for class scores ``(K,)``, ``"map"`` for a map of class scores ``(K, *S)`` with 1 to 3 spatial
    axes (segmentation); AttributionError for any other score node."""
    shape = graph.by_id[score_node(graph)].output_shape
    if len(shape) == 1:
        return "classes"
    if len(shape) - 1 in INPUT_KINDS:
        return "map"
    raise AttributionError(f"the score node '{score_node(graph)}' has shape {list(shape)}: attribution needs class "
                           "scores (K,) or a map of class scores (K, L), (K, H, W) or (K, D, H, W)")


def resolve_region(graph: Graph, region: Any) -> tuple[slice, ...] | None:
    """The box of a map output ``(K, *S)`` whose class-k logits make the target's score, as slices of ``S``.

    ``region`` is ``[starts..., ends...]`` in output positions, half-open: ``[y0, x0, y1, x1]`` for a map
    ``(K, H, W)`` covers rows ``y0 .. y1 - 1`` and columns ``x0 .. x1 - 1``; ``[l0, l1]`` for ``(K, L)``;
    ``[d0, y0, x0, d1, y1, x1]`` for ``(K, D, H, W)``. None: the whole map (and always for class scores).
    """
    if region is None:
        return None
    shape = graph.by_id[score_node(graph)].output_shape
    if output_kind(graph) == "classes":
        raise AttributionError(f"a region is for models whose output is a map of class scores (K, H, W); this "
                               f"model outputs class scores {list(shape)}: leave region out")
    sizes = shape[1:]
    names = _BOX_AXES[len(sizes)]
    spelled = ", ".join([f"{n}0" for n in names] + [f"{n}1" for n in names])
    try:
        box = [int(v) for v in region]
    except (TypeError, ValueError):
        raise AttributionError(f"region must be {len(sizes) * 2} integers [{spelled}], got {region!r}") from None
    if len(box) != 2 * len(sizes):
        raise AttributionError(f"region must be {len(sizes) * 2} integers [{spelled}] for an output map of shape "
                               f"{list(shape)}, got {len(box)}: {box}")
    starts, ends = box[:len(sizes)], box[len(sizes):]
    for name, start, end, size in zip(names, starts, ends, sizes):
        if not 0 <= start < end <= size:
            raise AttributionError(f"region {box} does not fit the output map {'×'.join(map(str, sizes))}: "
                                   f"{name} needs 0 <= {name}0 < {name}1 <= {size} (half-open), got {name}0 = {start}, "
                                   f"{name}1 = {end}")
    return tuple(slice(start, end) for start, end in zip(starts, ends))


def region_axes(graph: Graph) -> tuple[str, ...] | None:
    """The names of a region's axes, in ``resolve_region``'s order (``("y", "x")`` for a map ``(K, H, W)``); None
    for class scores. AttributionError for an output that is neither."""
    if output_kind(graph) == "classes":
        return None
    return _BOX_AXES[len(graph.by_id[score_node(graph)].output_shape) - 1]


def region_list(region: tuple[slice, ...] | None) -> list[int] | None:
    """The slices of ``resolve_region`` back as ``[starts..., ends...]``."""
    return None if region is None else [s.start for s in region] + [s.stop for s in region]


def class_scores(logits: np.ndarray, region: tuple[slice, ...] | None = None) -> np.ndarray:
    """Each class's score, ``(N, K)``: the logits themselves, or for a map ``(N, K, *S)`` the sum of each class's
    logits over ``region`` (None: the whole map)."""
    if logits.ndim == 2:
        return logits
    box = logits if region is None else logits[(slice(None), slice(None), *region)]
    return box.sum(axis=tuple(range(2, logits.ndim)))


def score_seed(logits: np.ndarray, target: int, region: tuple[slice, ...] | None = None) -> np.ndarray:
    """``∂S/∂logits`` for the target's score ``S``: one at class ``target`` (for a map: at every position of
    ``region`` in that class's channel), zero elsewhere."""
    seed = np.zeros_like(logits)
    if logits.ndim == 2 or region is None:
        seed[:, target] = 1
    else:
        seed[(slice(None), target, *region)] = 1
    return seed


def class_probabilities(logits: np.ndarray, target: int, region: tuple[slice, ...] | None = None) -> np.ndarray:
    """The target's softmax probability ``(N,)``; for a map, its per-position probability (softmax over the
    classes at each position) averaged over ``region``."""
    probabilities = softmax_forward(logits)[0][:, target]
    if logits.ndim == 2:
        return probabilities
    box = probabilities if region is None else probabilities[(slice(None), *region)]
    return box.mean(axis=tuple(range(1, box.ndim)))


def check_single_input(graph: Graph, x: np.ndarray) -> None:
    graph.check_input(x)
    if x.shape[0] != 1:
        raise AttributionError(f"attribution explains one input at a time: got a batch of {x.shape[0]}")


def resolve_target(graph: Graph, logits: np.ndarray, target: int | None,
                   region: tuple[slice, ...] | None = None) -> int:
    """``target`` checked against the number of classes, or the top prediction when None (for a map: the class
    whose logits sum highest over ``region``)."""
    output_kind(graph)
    classes = logits.shape[1]
    if target is None:
        return int(np.argmax(class_scores(logits, region)[0]))
    if not 0 <= int(target) < classes:
        raise AttributionError(f"target class {target} does not exist: this model has classes 0 to {classes - 1}")
    return int(target)


def spatial_dims(shape: tuple[int, ...]) -> int:
    """Spatial axes of a per-sample shape ``(C, *spatial)``."""
    return len(shape) - 1


def _layer_letters(dims: int) -> str:
    return INPUT_KINDS[dims][1]


def default_layer(graph: Graph) -> str:
    """The last node with the input's spatial axes (2D for an image) that feeds an op mixing all positions (global
    pooling, flatten, attention pooling); failing that, the last node with the input's spatial axes before the score
    node (a map of class scores is not its own explanation: its Grad-CAM would be the target's logits again)."""
    dims = len(input_size(graph))
    before_score = graph.nodes[:[n.id for n in graph.nodes].index(score_node(graph))]
    candidates = [n for n in before_score if spatial_dims(n.output_shape) == dims and n.output_shape[0] > 1]
    if not candidates:
        raise AttributionError(f"this model has no layer with a {dims}D spatial extent {_layer_letters(dims)} "
                               "to explain")
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
    dims = len(input_size(graph))
    if spatial_dims(graph.by_id[layer].output_shape) != dims:
        raise AttributionError(f"node '{layer}' has shape {list(graph.by_id[layer].output_shape)}: class activation "
                               f"maps need a layer with the input's {dims}D spatial extent {_layer_letters(dims)}")
    return layer


#: the activations one batch of passes may hold (bytes, every node's output). Beyond a few inputs a batch fits
#: no cache anyway, so a bigger one gains nothing per pass, holds more memory and suffers when other processes
#: compete for memory bandwidth. Measured on EfficientNet-Lite0 (79 MB per input, Integrated Gradients, 32
#: passes, one thread): batches of 4, 8 and 16 took 2.3 s on a quiet machine; under load 16 took 4-6 s, 4-8 still
#: 2.3. 512 MiB batches (6 inputs) peaked at ~1 GB resident in a lecture load; 256 MiB (3 inputs) keeps it lower.
BATCH_BYTES = 256 * 2**20
#: a pass that is differentiated holds, per input, about this many times its activations (the forward caches,
#: then the gradients). Integrated Gradients on EfficientNet-Lite0, 12 inputs: batches of 3 peaked at 571 MiB
#: resident and took 1.89 s; batches of 1 peaked at 256 MiB and took 1.52 s.
BACKWARD_MEMORY = 3


def effective_batch(graph: Graph, xs: np.ndarray, batch_size: int, backward: bool = False) -> int:
    """``batch_size``, or fewer inputs per batch where what they hold would pass ``BATCH_BYTES``: their activations,
    times ``BACKWARD_MEMORY`` for passes that are ``backward`` differentiated."""
    per_input = graph.activation_count() * xs.itemsize * (BACKWARD_MEMORY if backward else 1)
    return max(1, min(int(batch_size), BATCH_BYTES // max(1, per_input)))


def input_gradients(graph: Graph, params: dict, xs: np.ndarray, target: int, batch_size: int = 16,
                    rule=None, passed: Callable[[int], None] | None = None,
                    region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """d score_target / d input for each input in ``xs: (B, *input_shape)``, in batches (``effective_batch``);
    ``passed(n)`` is told after each batch of ``n`` inputs. ``region``: see ``class_scores``.

    Returns ``(gradients (B, *input_shape), scores (B,))``.
    """
    node = score_node(graph)
    grads, scores = [], []
    batch_size = effective_batch(graph, xs, batch_size, backward=True)
    for start in range(0, len(xs), batch_size):
        chunk = xs[start:start + batch_size]
        trace = graph.forward(chunk, params, stop_at=node)
        logits = trace.activations[node]
        scores.append(class_scores(logits, region)[:, target])
        grads.append(graph.backward(trace, {node: score_seed(logits, target, region)}, rule=rule,
                                    params=False).input)
        if passed is not None:
            passed(len(chunk))
    return np.concatenate(grads), np.concatenate(scores)


def target_scores(graph: Graph, params: dict, xs: np.ndarray, target: int, batch_size: int = 16,
                  probabilities: bool = False, passed: Callable[[int], None] | None = None,
                  region: tuple[slice, ...] | None = None) -> np.ndarray:
    """The target's score (or softmax probability, ``class_probabilities``) for each input in ``xs``, forward
    passes in batches; ``passed(n)`` is told after each batch of ``n`` inputs. ``region``: see ``class_scores``."""
    node = score_node(graph)
    out = []
    batch_size = effective_batch(graph, xs, batch_size)
    for start in range(0, len(xs), batch_size):
        logits = graph.forward(xs[start:start + batch_size], params, keep_caches=False, stop_at=node, keep=()).output
        if probabilities:
            out.append(class_probabilities(logits, target, region))
        else:
            out.append(class_scores(logits, region)[:, target])
        if passed is not None:
            passed(len(logits))
    return np.concatenate(out)


def forward_with_layer(graph: Graph, params: dict, x: np.ndarray, target: int | None, layer: str,
                       region: tuple[slice, ...] | None = None) -> tuple[Trace, int, np.ndarray, np.ndarray]:
    """Forward, then backward from the target score down to ``layer`` only.

    Returns ``(trace, target, activations A (K, *s), gradients dS/dA (K, *s))``, ``s`` the layer's spatial shape.
    """
    node = score_node(graph)
    trace = graph.forward(x, params, stop_at=node)
    logits = trace.activations[node]
    target = resolve_target(graph, logits, target, region)
    grads = graph.backward(trace, {node: score_seed(logits, target, region)}, stop_at=layer, params=False)
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
