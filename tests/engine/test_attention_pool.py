"""Attention pooling: spatial softmax and weighted sums by hand, gradient checks, PyTorch, ops, a full head."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.attention import (
    attention_pool_backward,
    attention_pool_forward,
    spatial_softmax_backward,
    spatial_softmax_forward,
)
from engine.ops.base import GLOBAL, OP_REGISTRY
from tests.engine.graphcheck import graph_gradient_errors


def test_by_hand():
    # Scores ln 1, ln 2, ln 3, ln 4 on a 2x2 map -> weights 1/10, 2/10, 3/10, 4/10.
    scores = np.log(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    weights, _ = spatial_softmax_forward(scores)
    np.testing.assert_allclose(weights, [[[[0.1, 0.2], [0.3, 0.4]]]])
    features = np.array([[[[10.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    pooled, cache = attention_pool_forward(features, weights)
    np.testing.assert_allclose(pooled, [[1.0, 1.0]])  # 0.1 * 10; a constant map pools to itself
    dfeatures, dweights = attention_pool_backward(np.array([[1.0, 2.0]]), cache)
    np.testing.assert_allclose(dfeatures[0, 1], 2 * weights[0, 0])
    np.testing.assert_allclose(dweights, [[[[12.0, 2.0], [2.0, 2.0]]]])  # 1 * f0 + 2 * f1


def test_weights_sum_to_one_per_map_and_are_stable(rng):
    scores = rng.standard_normal((3, 2, 4, 5)) * 100
    weights, _ = spatial_softmax_forward(scores.astype(np.float32))
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights.sum(axis=(2, 3)), 1, rtol=1e-5)
    assert (weights >= 0).all()


def test_gradient_checks_and_negative_control(rng):
    scores = rng.standard_normal((2, 1, 3, 4))
    (err,) = check_function(lambda s: spatial_softmax_forward(s)[0],
                            lambda d: (spatial_softmax_backward(d, spatial_softmax_forward(scores)[1]),), [scores])
    assert err < 1e-7
    features, weights = rng.standard_normal((2, 3, 3, 4)), rng.uniform(0, 1, (2, 1, 3, 4))
    errors = check_function(lambda f, w: attention_pool_forward(f, w)[0],
                            lambda d: attention_pool_backward(d, attention_pool_forward(features, weights)[1]),
                            [features, weights])
    assert max(errors) < 1e-7

    def wrong(d):  # negative control: the weights' gradient of channel 0 only, not summed over channels
        dfeatures, _ = attention_pool_backward(d, attention_pool_forward(features, weights)[1])
        return dfeatures, d[:, :1, None, None] * features[:, :1]

    assert check_function(lambda f, w: attention_pool_forward(f, w)[0], wrong, [features, weights])[1] > 1e-2


def test_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    scores, features = rng.standard_normal((2, 1, 4, 3)), rng.standard_normal((2, 5, 4, 3))
    dout = rng.standard_normal((2, 5))
    weights, s_cache = spatial_softmax_forward(scores)
    pooled, p_cache = attention_pool_forward(features, weights)
    dfeatures, dweights = attention_pool_backward(dout, p_cache)
    dscores = spatial_softmax_backward(dweights, s_cache)
    ts, tf = torch.tensor(scores, requires_grad=True), torch.tensor(features, requires_grad=True)
    tw = torch.softmax(ts.flatten(2), dim=2).view_as(ts)
    ref = (tf * tw).sum(dim=(2, 3))
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(weights, tw.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(pooled, ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dfeatures, tf.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dscores, ts.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_ops_shapes_geometry_macs_and_errors():
    base = {"input_shape": [4, 3, 5]}
    graph = Graph({**base, "nodes": [
        {"id": "scores", "op": "constant", "inputs": [], "shape": [1, 3, 5]},
        {"id": "att", "op": "spatial_softmax"},
        {"id": "pool", "op": "attention_pool", "inputs": ["input", "att"]},
    ]})
    assert graph.by_id["att"].output_shape == (1, 3, 5) and graph.by_id["att"].op.geometry() == GLOBAL
    assert graph.by_id["pool"].output_shape == (4,) and graph.by_id["pool"].op.geometry() == GLOBAL
    assert graph.by_id["pool"].op.macs() == 4 * 3 * 5
    with pytest.raises(SpecError, match=r"node 'pool': attention_pool's weights \(second input\) have shape "
                                        r"\[4, 3, 5\], but features \[4, 3, 5\] need weights \[1, 3, 5\]"):
        Graph({**base, "nodes": [{"id": "pool", "op": "attention_pool", "inputs": ["input", "input"]}]})
    with pytest.raises(SpecError, match="takes 2 input"):
        Graph({**base, "nodes": [{"id": "pool", "op": "attention_pool"}]})
    with pytest.raises(SpecError, match="no spatial axes"):
        Graph({"input_shape": [5], "nodes": [{"id": "att", "op": "spatial_softmax"}]})


@pytest.mark.skipif("conv2d" not in OP_REGISTRY, reason="conv ops not written yet")
@pytest.mark.parametrize("training", [False, True])
def test_attention_head_graph_passes_a_gradient_check(rng, training):
    """The residual digit network's head: 1x1-conv scores, spatial softmax, weighted pooling, classifier."""
    graph = Graph({"input_shape": [2, 4, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "bias": False},
        {"id": "bn", "op": "batch_norm"},
        {"id": "features", "op": "relu"},
        {"id": "att_score", "op": "conv2d", "out_channels": 1, "kernel_size": 1},
        {"id": "attention", "op": "spatial_softmax"},
        {"id": "pooled", "op": "attention_pool", "inputs": ["features", "attention"]},
        {"id": "logits", "op": "linear", "out_features": 3},
    ]})
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=4).items()}
    x = rng.standard_normal((3, 2, 4, 4))
    trace = graph.forward(x, params, training=training)
    np.testing.assert_allclose(trace.activations["attention"].sum(axis=(2, 3)), 1)
    errors = graph_gradient_errors(graph, x, params, training=training)
    # att_score.bias shifts every score equally, which softmax ignores: its true gradient is 0
    assert np.allclose(graph.backward(trace, {"logits": np.ones((3, 3))}).params["att_score.bias"], 0, atol=1e-12)
    errors.pop("att_score.bias")
    assert max(errors.values()) < 1e-6, errors
