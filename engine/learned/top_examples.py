"""Top examples: for every channel of every layer, the dataset images that activate it most.

The Deep Visualization Toolbox (Yosinski et al., 2015) and OpenAI Microscope show, beside each channel, the images
that make it fire hardest: what a channel detects, told by examples. Here, for a channel ``c`` of node ``L`` and one
image ``n``, the channel's *score* is its largest value over the positions,

    score(n, c) = max over (h, w) of a_L[n, c, h, w]

taken at the first position (in row-major order) that reaches it. The ``k`` images of the dataset with the highest
scores are the channel's top examples; each comes with the value and the position, and the input box the unit at
that position reads (its receptive field, ``engine.receptive_field.unit_box``), so that the page can show the part
of the digit the unit actually saw.

The dataset is streamed in batches through a lean forward pass that keeps only the wanted nodes; per channel a
running top-k is merged with each batch's scores. Ties are broken the same way every time: a higher score first,
then the lower dataset index (images are visited in order and the merge is a stable sort), then, within one image,
the first position in row-major order (``argmax``). A node whose units have no positions (``(F,)``: a linear
layer, global pooling) has one position per unit: its score is its value and its box the whole input.

Which nodes have channels (:func:`channel_nodes`): those of shape ``(C, *spatial)`` with the input's spatial axes,
and vectors ``(F,)`` except rearrangements (``flatten``, ``reshape``, and what only passes them on elementwise),
whose "channels" would be single positions of an earlier layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.graph import Graph
from engine.receptive_field import LOCAL, WHOLE, NodeRF, unit_box

#: the most examples kept per channel
MAX_K = 16
#: the activations a batch may hold at once (float32 values of every kept node), which sets the batch size
BATCH_BUDGET_VALUES = 16 * 2**20
MAX_BATCH = 256
REARRANGING_OPS = {"flatten", "reshape"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NodeTopExamples:
    """The top examples of every channel of one node, best first.

    ``indices: (C, K)`` int64 dataset indices, ``values: (C, K)`` float32 scores (the channel's maximum over its
    positions in that image), ``positions: (C, K, S)`` int64, the position of that maximum (S spatial axes: 2
    for ``(C, H, W)``, 0 for a vector node). K is the number asked for, or the dataset's size if smaller.
    """

    node_id: str
    indices: np.ndarray
    values: np.ndarray
    positions: np.ndarray

    @property
    def channels(self) -> int:
        return self.indices.shape[0]


@dataclass(frozen=True)
class ExampleBox:
    """Where one top example's unit looks in the input, per spatial axis (row axis first), inclusive.

    ``start``/``end`` is the receptive field, which may reach into the padding (below 0 or past the edge);
    ``clipped_start``/``clipped_end`` is its part inside the image, the crop; ``clipped`` says whether they differ.
    ``whole`` is True when the unit sees the whole input (a global receptive field).
    """

    start: tuple[int, ...]
    end: tuple[int, ...]
    clipped_start: tuple[int, ...]
    clipped_end: tuple[int, ...]
    clipped: bool
    whole: bool
    note: str


def channel_nodes(graph: Graph) -> list[str]:
    """The ids of the nodes whose channels have top examples, in graph order (see the module's docstring)."""
    spatial = len(graph.input_shape) - 1
    rearranged: set[str] = set()
    found = []
    for node in graph.nodes:
        shape = tuple(node.output_shape)
        parents = node.inputs
        passes_on = (len(parents) == 1 and parents[0] in rearranged
                     and shape == tuple(graph.by_id[parents[0]].output_shape))
        if node.op.op in REARRANGING_OPS or passes_on:
            rearranged.add(node.id)
            continue
        if (spatial and len(shape) == spatial + 1) or len(shape) == 1:
            found.append(node.id)
    return found


def batch_size_for(graph: Graph, nodes: Sequence[str]) -> int:
    """A batch size whose kept activations stay within ``BATCH_BUDGET_VALUES`` values (at least 1).

    Per digit: the kept nodes' values, and a quarter of the whole graph's for the activations alive at once on
    the way (a lean pass releases each after its last reader)."""
    per_sample = sum(int(np.prod(graph.node(n).output_shape)) for n in nodes) + graph.activation_count() // 4
    return int(max(1, min(MAX_BATCH, BATCH_BUDGET_VALUES // max(per_sample, 1))))


def channel_scores(activation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's maximum over its positions, and where it is.

    ``activation: (B, C, *spatial)`` or ``(B, F)`` -> ``scores: (B, C)`` and ``positions: (B, C, S)`` int64
    (the first position in row-major order that reaches the maximum; S = 0 for ``(B, F)``).
    """
    batch, channels, *spatial = activation.shape
    flat = activation.reshape(batch, channels, -1)
    where = np.argmax(flat, axis=2)
    scores = np.take_along_axis(flat, where[:, :, None], axis=2)[:, :, 0]
    positions = np.stack(np.unravel_index(where, spatial), axis=-1) if spatial else np.zeros((batch, channels, 0),
                                                                                             np.int64)
    return scores.astype(np.float32), positions.astype(np.int64)


def merge_top(best: NodeTopExamples, scores: np.ndarray, positions: np.ndarray, first_index: int,
              k: int) -> NodeTopExamples:
    """``best`` merged with one batch's ``scores: (B, C)`` and ``positions: (B, C, S)``, the batch's images being
    dataset indices ``first_index .. first_index + B - 1``; keeps the ``k`` highest per channel.

    ``best`` holds earlier (lower) indices, so a stable sort of the scores, descending, ranks equal scores by index.
    """
    batch, channels = scores.shape
    indices = np.broadcast_to(np.arange(first_index, first_index + batch, dtype=np.int64)[None], (channels, batch))
    values = np.concatenate([best.values, scores.T], axis=1)
    all_indices = np.concatenate([best.indices, indices], axis=1)
    all_positions = np.concatenate([best.positions, positions.transpose(1, 0, 2)], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return NodeTopExamples(best.node_id, np.take_along_axis(all_indices, order, axis=1),
                           np.take_along_axis(values, order, axis=1),
                           np.take_along_axis(all_positions, order[:, :, None], axis=1))


def _empty(graph: Graph, node_id: str) -> NodeTopExamples:
    shape = tuple(graph.node(node_id).output_shape)
    channels, spatial = shape[0], len(shape) - 1
    return NodeTopExamples(node_id, np.zeros((channels, 0), np.int64), np.zeros((channels, 0), np.float32),
                           np.zeros((channels, 0, spatial), np.int64))


def top_examples(graph: Graph, params: dict[str, np.ndarray], x: np.ndarray, k: int = MAX_K,
                 nodes: Sequence[str] | None = None, batch_size: int | None = None,
                 progress: Progress | None = None) -> dict[str, NodeTopExamples]:
    """The ``k`` images of ``x: (N, *input_shape)`` that activate each channel of each node most (see the module's
    docstring), per node id in graph order. ``nodes`` defaults to :func:`channel_nodes`.

    ``progress(done, total)`` is called after each batch with the number of images seen; an exception it raises
    (a cancelled job) ends the pass.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k is the number of top examples per channel, from 1 to {MAX_K}; got {k}")
    graph.check_input(x)
    wanted = channel_nodes(graph) if nodes is None else list(nodes)
    for node_id in wanted:
        graph.node(node_id)
    if not wanted:
        return {}
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    last = max(wanted, key=position.__getitem__)
    size = batch_size or batch_size_for(graph, wanted)
    best = {node_id: _empty(graph, node_id) for node_id in wanted}
    total = x.shape[0]
    for start in range(0, total, size):
        trace = graph.forward(x[start:start + size], params, keep_caches=False, keep=wanted, stop_at=last)
        for node_id in wanted:
            scores, where = channel_scores(trace.activations[node_id])
            best[node_id] = merge_top(best[node_id], scores, where, start, k)
        del trace
        if progress is not None:
            progress(min(start + size, total), total)
    return {node_id: best[node_id] for node_id in sorted(wanted, key=position.__getitem__)}


def example_box(rf: NodeRF, channel: int, position: Sequence[int]) -> ExampleBox:
    """The input box of the unit at ``position`` (spatial, row axis first; empty for a vector node) of ``channel``,
    as :func:`engine.receptive_field.unit_box` gives it, with its part inside the image.

    A unit without a receptive field in the article's sense (status "undefined") gets the whole input, with a note
    saying so: the crop is then the whole image, not a claim about what the unit reads.
    """
    size = rf.input_size
    if rf.status not in (LOCAL, WHOLE):
        last = tuple(s - 1 for s in size)
        zero = (0,) * len(size)
        return ExampleBox(zero, last, zero, last, False, True,
                          f"no receptive field ({rf.reason}): the whole image is shown")
    box = unit_box(rf, (channel, *position))
    start = tuple(a.start for a in box.axes)
    end = tuple(a.end for a in box.axes)
    clipped_start = tuple(a.clipped_start for a in box.axes)
    clipped_end = tuple(a.clipped_end for a in box.axes)
    return ExampleBox(start, end, clipped_start, clipped_end, (start, end) != (clipped_start, clipped_end),
                      rf.status == WHOLE, box.note)


def crop(image: np.ndarray, box: ExampleBox) -> np.ndarray:
    """The part of ``image: (..., H, W)`` inside ``box`` (its clipped extent): ``(..., h, w)``."""
    spatial = len(box.clipped_start)
    index = (Ellipsis, *(slice(a, b + 1) for a, b in zip(box.clipped_start[-spatial:], box.clipped_end[-spatial:])))
    return image[index]
