"""Dropout: inverted scaling, the same mask forward and backward, identity in inference, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.dropout import dropout_backward, dropout_forward


def test_training_drops_about_p_and_scales_survivors():
    x = np.ones((200, 100), dtype=np.float32)
    out, mask = dropout_forward(x, 0.3, training=True, rng=np.random.default_rng(0))
    assert out.dtype == np.float32
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 20,000 draws: the standard error is 0.003
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(dropout_backward(np.full_like(x, 2), mask), 2 * out)


def test_gradient_check_with_a_fixed_mask(rng):
    x = rng.standard_normal((4, 5))

    def forward(a):
        return dropout_forward(a, 0.5, training=True, rng=np.random.default_rng(7))[0]

    mask = dropout_forward(x, 0.5, training=True, rng=np.random.default_rng(7))[1]
    assert check_function(forward, lambda d: (dropout_backward(d, mask),), [x])[0] < 1e-7
    wrong = np.ones_like(mask)  # negative control: ignoring the mask
    assert check_function(forward, lambda d: (dropout_backward(d, wrong),), [x])[0] > 0.1


def test_inference_and_edge_probabilities(rng):
    x = rng.standard_normal((3, 4))
    out, cache = dropout_forward(x, 0.5, training=False, rng=rng)
    assert out is x and dropout_backward(x, cache) is x
    np.testing.assert_array_equal(dropout_forward(x, 1.0, training=True, rng=rng)[0], 0)
    np.testing.assert_array_equal(dropout_forward(x, 0.0, training=True, rng=rng)[0], x)


def test_op_is_seeded_and_checks_p():
    graph = Graph({"input_shape": [50], "nodes": [{"id": "drop", "op": "dropout", "p": 0.2}]})
    x = np.ones((4, 50), dtype=np.float32)
    a = graph.forward(x, {}, training=True, rng=np.random.default_rng(1)).output
    b = graph.forward(x, {}, training=True, rng=np.random.default_rng(1)).output
    np.testing.assert_array_equal(a, b)
    assert (a == 0).any()
    np.testing.assert_array_equal(graph.forward(x, {}).output, x)
    with pytest.raises(SpecError, match="p is the probability of dropping a value and must be from 0 to 1"):
        Graph({"input_shape": [5], "nodes": [{"id": "drop", "op": "dropout", "p": 1.5}]})


def test_same_scaling_as_pytorch(torch_or_skip):
    """The masks differ (different generators), but survivors are scaled alike and the gradient follows the mask."""
    torch = torch_or_skip
    x = np.linspace(1, 2, 400).reshape(4, 100)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.dropout(t, p=0.25, training=True)
    ref.backward(torch.ones_like(ref))
    theirs_kept = ref.detach().numpy() != 0
    out, mask = dropout_forward(x, 0.25, training=True, rng=np.random.default_rng(0))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.75, rtol=1e-12)
    np.testing.assert_allclose(ref.detach().numpy()[theirs_kept], x[theirs_kept] / 0.75, rtol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), theirs_kept / 0.75, rtol=1e-12)
    np.testing.assert_allclose(dropout_backward(np.ones_like(x), mask), kept / 0.75, rtol=1e-12)
