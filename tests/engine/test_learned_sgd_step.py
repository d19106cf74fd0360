"""One SGD step on one filter (or on every parameter): a hand-worked step, the loss falling for a small rate and the
first-order prediction of how much, and the negative control, a rate so large the loss rises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.datasets.mnist import load_mnist
from engine.errors import ShapeError
from engine.learned.backprop import backpropagate
from engine.learned.sgd_step import sgd_step, sweep
from engine.models.registry import load_model
from tests.engine.test_learned_backprop import tiny


def test_hand_worked_step_on_one_filter():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    step = sgd_step(graph, params, x, result, "conv", 0, lr=0.4)
    # gradient [[−0.25, 0], [−0.25, −0.25]] (test_learned_backprop), so w' = w − 0.4 g = [[1.1, 0], [0.1, −0.9]]
    np.testing.assert_allclose(step["gradient"][0], [[-0.25, 0], [-0.25, -0.25]])
    np.testing.assert_allclose(step["weight_after"][0], [[1.1, 0], [0.1, -0.9]], rtol=1e-6)
    np.testing.assert_array_equal(step["weight_before"], params["conv.weight"][0])
    assert step["bias_before"] == step["bias_after"] == 0.0 and step["bias_gradient"] == 0.0
    # y = [[3.3 + 0.2 − 0.9, 1.1 + 0.1 − 1.8], [2.2 + 0.1, 1.1 − 3.6]] = [[2.6, −0.6], [2.3, −2.5]]
    # ReLU → r = [2.6, 0, 2.3, 0];  z = [0.5 · 2.6, 0.5 · 2.3] = [1.3, 1.15];  L = ln(1 + e^(1.15 − 1.3))
    outcome = step["outcome"]
    assert step["loss_before"] == pytest.approx(math.log(2))
    assert outcome.loss_after == pytest.approx(math.log(1 + math.exp(-0.15)), rel=1e-6)
    assert outcome.loss_after < step["loss_before"]
    # first order: L − lr |g|² = ln 2 − 0.4 · 3 · 0.0625
    assert outcome.predicted_loss == pytest.approx(math.log(2) - 0.4 * 3 * 0.0625)
    assert step["moved"] == 5  # four weights and the bias
    params_untouched = tiny()[1]
    for name, value in params.items():
        np.testing.assert_array_equal(value, params_untouched[name])  # the model's own weights are not changed


@pytest.fixture(scope="module")
def classic_start():
    bundle = load_model("digits_classic")
    x, y = load_mnist("test", limit=1)
    wrong = (int(y[0]) + 3) % 10
    return bundle.graph, bundle.params, x, backpropagate(bundle.graph, bundle.params, x, wrong)


@pytest.mark.parametrize("node", ["conv1", "conv2", "fc"])
@pytest.mark.parametrize("scope", ["filter", "all"])
def test_a_small_rate_lowers_the_loss_as_the_first_order_says(classic_start, node, scope):
    graph, params, x, result = classic_start
    grads = result.param_gradients[f"{node}.weight"]
    k = int(np.argmax(np.abs(grads).reshape(len(grads), -1).sum(axis=1)))  # the filter with the most gradient
    # a rate the first order says lowers the loss by 0.02%: well above float32 rounding, small enough to be linear
    (probe,) = sweep(graph, params, x, result, node, k, [1.0], scope)
    squared_norm = result.loss - probe.predicted_loss  # lr · |g|² with lr = 1
    (tiny_step,) = sweep(graph, params, x, result, node, k, [2e-4 * result.loss / squared_norm], scope)
    drop, predicted = result.loss - tiny_step.loss_after, result.loss - tiny_step.predicted_loss
    assert drop > 0, f"{node} {scope}: the loss rose after a tiny step"
    assert drop == pytest.approx(predicted, rel=0.05), "to first order the loss falls by lr · |g|²"


@pytest.mark.parametrize(("node", "k"), [("conv1", 0), ("conv2", 1)])
def test_negative_control_a_rate_far_too_large_raises_the_loss(classic_start, node, k):
    # One filter. (Not every filter overshoots: a large step may also switch a filter off for this input, and its
    # ReLUs then pass nothing, so the loss stays where it fell; and moving every parameter far enough along this
    # input's gradient can drive its loss to 0, as the last layer's bias alone can, wrecking the other inputs.)
    graph, params, x, result = classic_start
    small, large = sweep(graph, params, x, result, node, k, [1e-3, 1e3])
    assert small.loss_after < result.loss
    assert not large.loss_after <= result.loss  # larger, or overflowed to inf / NaN


def test_a_sweep_over_rates_falls_then_rises(classic_start):
    graph, params, x, result = classic_start
    rates = [10.0 ** e for e in np.arange(-4, 3.01, 0.5)]
    losses = [o.loss_after for o in sweep(graph, params, x, result, "conv1", 0, rates)]
    best = int(np.argmin(losses))
    assert 0 < best < len(rates) - 1, losses  # neither the smallest nor the largest rate is best
    assert losses[-1] > result.loss > losses[best]


def test_refusals(classic_start):
    graph, params, x, result = classic_start
    with pytest.raises(ShapeError, match="'pool1' is a max_pool2d, which has no filters"):
        sweep(graph, params, x, result, "pool1", 0, [0.1])
    with pytest.raises(ShapeError, match="has 8 filters"):
        sgd_step(graph, params, x, result, "conv1", 8, 0.1)
