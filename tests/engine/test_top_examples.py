"""Top examples (engine/learned/top_examples.py): the streamed running top-k against a brute-force computation that
keeps every activation, the crop box against the receptive-field module, deterministic ties, and negative controls
(a check that fails on a wrong ranking; an image that is not special is not ranked first)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.graph import Graph
from engine.learned.top_examples import (
    MAX_K,
    NodeTopExamples,
    channel_nodes,
    channel_scores,
    crop,
    example_box,
    top_examples,
)
from engine.receptive_field import receptive_fields, unit_box

SMALL = {  # padding (boxes clipped at the edges), a stride, a pool, a vector head, and a flatten to skip
    "input_shape": [1, 12, 12],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"id": "relu1", "op": "relu"},
        {"id": "conv2", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},
        {"id": "pool", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "flat", "op": "flatten"},
        {"id": "drop", "op": "dropout", "p": 0.3},
        {"id": "fc", "op": "linear", "out_features": 5},
    ],
}


@pytest.fixture
def small():
    graph = Graph(SMALL)
    params = graph.init_params(seed=3)
    x = np.random.default_rng(4).standard_normal((37, 1, 12, 12)).astype(np.float32)
    return graph, params, x


def brute_force(graph: Graph, params, x: np.ndarray, node_id: str, k: int) -> NodeTopExamples:
    """Every activation kept; per channel and image the maximum found by scanning the positions in row-major order
    (the first one kept on equality), then all images sorted by score, descending, equal scores by index."""
    activation = graph.forward(x, params, keep_caches=False).activations[node_id]
    n, channels = activation.shape[:2]
    spatial = activation.shape[2:]
    scores = np.zeros((n, channels), np.float32)
    where = np.zeros((n, channels, len(spatial)), np.int64)
    for i in range(n):
        for c in range(channels):
            best, at = -np.inf, ()
            for position in np.ndindex(*spatial):
                if activation[(i, c, *position)] > best:
                    best, at = activation[(i, c, *position)], position
            scores[i, c], where[i, c] = best, at
    order = np.argsort(-scores, axis=0, kind="stable")[:k].T  # (C, k)
    return NodeTopExamples(node_id, order, np.take_along_axis(scores.T, order, axis=1),
                           np.stack([where[order[c], c] for c in range(channels)]))


def assert_same(mine: NodeTopExamples, theirs: NodeTopExamples) -> None:
    assert mine.indices.shape == theirs.indices.shape, f"mine {mine.indices.shape}, theirs {theirs.indices.shape}"
    np.testing.assert_array_equal(mine.indices, theirs.indices, err_msg=f"{mine.node_id}: indices, mine vs theirs")
    np.testing.assert_allclose(mine.values, theirs.values, rtol=1e-5, atol=1e-6, err_msg=f"{mine.node_id}: values")
    np.testing.assert_array_equal(mine.positions, theirs.positions, err_msg=f"{mine.node_id}: positions")


def test_channel_nodes_skip_rearrangements(small):
    graph, _, _ = small
    assert channel_nodes(graph) == ["conv1", "relu1", "conv2", "pool", "fc"]  # not flat, nor drop that passes it on


@pytest.mark.parametrize("batch_size", [1, 5, 37, 100])
def test_streamed_top_k_is_the_brute_force_answer(small, batch_size):
    graph, params, x = small
    seen = []
    result = top_examples(graph, params, x, k=6, batch_size=batch_size, progress=lambda d, t: seen.append((d, t)))
    assert list(result) == channel_nodes(graph)
    for node_id, mine in result.items():
        assert_same(mine, brute_force(graph, params, x, node_id, 6))
    assert seen[-1] == (37, 37) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == -(-37 // batch_size)


def test_vector_nodes_rank_by_value(small):
    graph, params, x = small
    mine = top_examples(graph, params, x, k=4, nodes=["fc"])["fc"]
    logits = graph.forward(x, params).activations["fc"]
    for c in range(5):
        assert list(mine.indices[c]) == list(np.argsort(-logits[:, c], kind="stable")[:4])
    assert mine.positions.shape == (5, 4, 0)


def test_fewer_images_than_k_keeps_them_all(small):
    graph, params, x = small
    result = top_examples(graph, params, x[:5], k=MAX_K, nodes=["conv2"])["conv2"]
    assert result.indices.shape == (4, 5)
    assert all(sorted(row) == [0, 1, 2, 3, 4] for row in result.indices.tolist())


def test_k_out_of_range_is_refused(small):
    graph, params, x = small
    for k in (0, MAX_K + 1):
        with pytest.raises(ValueError, match="from 1 to 16"):
            top_examples(graph, params, x, k=k)


def test_crop_box_is_the_receptive_field_modules_answer(small):
    graph, params, x = small
    rfs = receptive_fields(graph)
    result = top_examples(graph, params, x, k=5)
    clipped_seen = unclipped_seen = 0
    for node_id, found in result.items():
        for c in range(found.channels):
            for j in range(found.indices.shape[1]):
                position = tuple(found.positions[c, j])
                box = example_box(rfs[node_id], c, position)
                theirs = unit_box(rfs[node_id], (c, *position))
                assert box.start == tuple(a.start for a in theirs.axes)
                assert box.end == tuple(a.end for a in theirs.axes)
                assert box.clipped_start == tuple(a.clipped_start for a in theirs.axes)
                assert box.clipped_end == tuple(a.clipped_end for a in theirs.axes)
                assert box.clipped == (box.start != box.clipped_start or box.end != box.clipped_end)
                assert box.whole == (node_id == "fc")
                patch = crop(x[found.indices[c, j]], box)
                assert patch.shape == (1, *(b - a + 1 for a, b in zip(box.clipped_start, box.clipped_end)))
                clipped_seen += box.clipped
                unclipped_seen += not box.clipped
    assert clipped_seen and unclipped_seen  # both kinds occurred


def test_crop_box_worked_by_hand(small):
    graph, _, _ = small
    rfs = receptive_fields(graph)
    # conv1 (k 3, padding 1): unit (0, 0) reads rows and columns -1..1, of which 0..1 lie in the image
    corner = example_box(rfs["conv1"], 0, (0, 0))
    assert (corner.start, corner.end, corner.clipped_start, corner.clipped_end, corner.clipped) == (
        (-1, -1), (1, 1), (0, 0), (1, 1), True)
    # conv2 after conv1: r = 3 + 2·1 = 5, S = 2, P = 1; unit (2, 3) reads rows 3..7 and columns 5..9
    inner = example_box(rfs["conv2"], 1, (2, 3))
    assert (inner.start, inner.end, inner.clipped) == ((3, 5), (7, 9), False)
    image = np.arange(144).reshape(1, 12, 12)
    np.testing.assert_array_equal(crop(image, inner), image[:, 3:8, 5:10])
    # pool after conv2: r = 5 + 1·2 = 7, S = 4, P = 1; unit (1, 1) reads 3..9
    assert example_box(rfs["pool"], 0, (1, 1)).start == (3, 3)
    whole = example_box(rfs["fc"], 2, ())
    assert (whole.clipped_start, whole.clipped_end, whole.whole, whole.clipped) == ((0, 0), (11, 11), True, False)


def test_ties_go_to_the_lower_index_and_the_first_position():
    graph = Graph({"input_shape": [1, 4, 4], "nodes": [{"id": "id", "op": "relu"}]})
    x = np.zeros((6, 1, 4, 4), np.float32)
    x[[1, 4], 0, 2, 1] = 5.0  # two images tie at the top...
    x[[1, 4], 0, 3, 3] = 5.0  # ...each with two positions reaching the maximum
    x[2, 0, 0, 0] = 3.0
    for batch_size in (1, 2, 6):
        found = top_examples(graph, {}, x, k=4, batch_size=batch_size)["id"]
        assert found.indices.tolist() == [[1, 4, 2, 0]]  # then the all-zero images, lowest index first
        assert found.positions[0, :2].tolist() == [[2, 1], [2, 1]]  # row-major first of (2, 1) and (3, 3)
        assert found.values.tolist() == [[5.0, 5.0, 3.0, 0.0]]


def test_channel_scores_take_the_maximum_not_the_mean():
    activation = np.array([[[[0.0, 9.0], [0.0, 0.0]]], [[[2.0, 2.0], [2.0, 2.0]]]], np.float32)  # (2, 1, 2, 2)
    scores, positions = channel_scores(activation)
    assert scores.tolist() == [[9.0], [2.0]] and positions.tolist() == [[[0, 1]], [[0, 0]]]


def test_negative_control_a_wrong_ranking_fails_the_comparison(small):
    """Ranking by the mean over positions instead of the maximum: the comparison with brute force must catch it."""
    graph, params, x = small
    activation = graph.forward(x, params).activations["conv2"]
    by_mean = np.argsort(-activation.mean(axis=(2, 3)), axis=0, kind="stable")[:6].T
    right = top_examples(graph, params, x, k=6, nodes=["conv2"])["conv2"]
    wrong = NodeTopExamples("conv2", by_mean, right.values, right.positions)
    with pytest.raises(AssertionError, match="indices"):
        assert_same(wrong, brute_force(graph, params, x, "conv2", 6))


def test_negative_control_a_planted_pattern_is_found_and_only_where_planted():
    """A channel that detects a vertical bar: the images with a bar rank first, at the bar; without them, none of
    the remaining images scores as high."""
    graph = Graph({"input_shape": [1, 10, 10], "nodes": [
        {"id": "bar", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "bias": False}]})
    params = {"bar.weight": np.array([[[[-1, 2, -1]] * 3]], np.float32)}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.3, (40, 1, 10, 10)).astype(np.float32)
    planted = [7, 23, 31]
    for i, col in zip(planted, (2, 5, 8)):
        x[i, 0, 3:6, col] = 1.0
    found = top_examples(graph, params, x, k=3)["bar"]
    assert sorted(found.indices[0].tolist()) == planted
    for j, i in enumerate(found.indices[0]):
        col = {7: 2, 23: 5, 31: 8}[int(i)]
        assert found.positions[0, j].tolist() == [3, col - 1]  # the unit centred on the bar's middle
    rest = np.setdiff1d(np.arange(40), planted)
    control = top_examples(graph, params, x[rest], k=1)["bar"]
    assert control.values[0, 0] < found.values[0, -1] / 2


def test_shipped_classic_logit_top_examples_are_that_digit():
    """On 600 of the shipped digits, the 9 images that raise each logit of digits_classic most are that digit."""
    from engine.datasets.mnist import load_mnist
    from engine.models.registry import load_model

    bundle = load_model("digits_classic")
    x, y = load_mnist("test", limit=600)
    found = top_examples(bundle.graph, bundle.params, x, k=9, nodes=["fc"])["fc"]
    for digit in range(10):
        assert (y[found.indices[digit]] == digit).all(), f"logit {digit}: labels {y[found.indices[digit]]}"
