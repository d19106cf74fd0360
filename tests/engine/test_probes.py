"""Linear probes: the loss and its gradient (by hand, central differences with a negative control, PyTorch),
standardisation with the training statistics, L-BFGS on problems with known minima, training on data whose
answer is known, and which nodes get probed."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph
from engine.gradcheck import numeric_gradient, relative_error
from engine.learned.lbfgs import minimize
from engine.learned.probes import logits_node, probe_loss, probe_nodes, standardise, train_probe
from engine.models.digits import classic_spec, resnet_spec
from engine.models.sequence_digits import gru_attention_spec, lstm_spec


# --- the objective --------------------------------------------------------------------------------------------------
def test_probe_loss_by_hand():
    # W = 0, b = 0: every class has probability 1/K, the loss is log K, dW = x^T (1/K - onehot) / N
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    labels = np.array([0, 2])
    loss, dw, db = probe_loss(np.zeros((2, 3)), np.zeros(3), x, labels, l2=0.5)
    assert loss == pytest.approx(np.log(3.0), rel=1e-12)
    residual = np.full((2, 3), 1 / 3) - np.eye(3)[labels]
    np.testing.assert_allclose(dw, x.T @ residual / 2, rtol=1e-12)
    np.testing.assert_allclose(db, residual.sum(axis=0) / 2, rtol=1e-12)
    # the penalty: (l2 / 2) |W|^2 adds 0.25 * 4 = 1 for W of ones, and l2 W = 0.5 to dW
    loss_ones, dw_ones, _ = probe_loss(np.ones((2, 3)), np.zeros(3), np.zeros((2, 2)), labels, l2=0.5)
    assert loss_ones == pytest.approx(np.log(3.0) + 0.25 * 6, rel=1e-12)
    np.testing.assert_allclose(dw_ones, 0.5, rtol=1e-12)


def test_probe_gradient_check_and_negative_control(rng):
    x = rng.standard_normal((20, 6))
    labels = rng.integers(0, 4, size=20)
    weights, bias = rng.standard_normal((6, 4)), rng.standard_normal(4)
    _, dw, db = probe_loss(weights, bias, x, labels, l2=0.3)
    numeric_w = numeric_gradient(lambda: probe_loss(weights, bias, x, labels, l2=0.3)[0], weights)
    numeric_b = numeric_gradient(lambda: probe_loss(weights, bias, x, labels, l2=0.3)[0], bias)
    assert relative_error(dw, numeric_w) < 1e-7
    assert relative_error(db, numeric_b) < 1e-7
    assert relative_error(dw - 0.3 * weights, numeric_w) > 0.05, "negative control: forgetting the penalty fails"
    assert relative_error(db + 0.3 * bias, numeric_b) > 0.05, "negative control: penalising the bias fails"


@pytest.mark.torch
def test_probe_loss_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    x = rng.standard_normal((50, 12))
    labels = rng.integers(0, 10, size=50)
    weights, bias = rng.standard_normal((12, 10)), rng.standard_normal(10)
    loss, dw, db = probe_loss(weights, bias, x, labels, l2=1e-3)
    w, b = torch.tensor(weights, requires_grad=True), torch.tensor(bias, requires_grad=True)
    theirs = torch.nn.functional.cross_entropy(torch.tensor(x) @ w + b, torch.tensor(labels)) + 0.5e-3 * (w ** 2).sum()
    theirs.backward()
    assert loss == pytest.approx(theirs.item(), rel=1e-12)
    np.testing.assert_allclose(dw, w.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(db, b.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_standardise_uses_the_training_statistics():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])  # feature 0: mean 2, std 1; feature 1 never varies
    test = np.array([[4.0, 7.0]])
    a, b = standardise(train, test)
    np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(b, [[2.0, 2.0]])  # (4 - 2) / 1 and (7 - 5) / 1: the test set's own spread is unused


# --- the optimiser --------------------------------------------------------------------------------------------------
def test_lbfgs_finds_a_quadratics_minimum(rng):
    a = rng.standard_normal((8, 8))
    hessian = a @ a.T + np.eye(8)
    target = rng.standard_normal(8)

    def objective(v):
        r = v - target
        return 0.5 * float(r @ hessian @ r), hessian @ r

    found = minimize(objective, np.zeros(8), tol=1e-10)
    assert found.converged and found.iterations < 60
    np.testing.assert_allclose(found.x, target, atol=1e-8)
    assert all(b <= a for a, b in zip(found.values, found.values[1:]))  # the line search only goes down


def test_lbfgs_on_rosenbrock():
    def rosenbrock(v):
        x, y = v
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2, np.array([-2 * (1 - x) - 400 * x * (y - x * x),
                                                               200 * (y - x * x)])

    found = minimize(rosenbrock, np.array([-1.2, 1.0]), tol=1e-8, max_iter=500)
    assert found.converged
    np.testing.assert_allclose(found.x, [1.0, 1.0], atol=1e-6)
    stopped = minimize(rosenbrock, np.array([-1.2, 1.0]), max_iter=3)
    assert stopped.iterations == 3 and not stopped.converged


# --- training -------------------------------------------------------------------------------------------------------
def _blobs(rng, n: int, gap: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 3, size=n)
    return rng.standard_normal((n, 5)) + gap * np.eye(3, 5)[labels], labels


def test_probe_separates_separable_classes_and_not_noise(rng):
    x_train, y_train = _blobs(rng, 300, gap=8.0)
    x_test, y_test = _blobs(rng, 100, gap=8.0)
    good = train_probe(x_train, y_train, x_test, y_test, classes=3)
    assert good.converged and good.train_accuracy == 1.0 and good.test_accuracy == 1.0
    # negative control: labels that the features do not predict stay near chance on held-out data
    noise = train_probe(x_train, rng.integers(0, 3, size=300), x_test, rng.integers(0, 3, size=100), classes=3)
    assert noise.test_accuracy < 0.5
    again = train_probe(x_train, y_train, x_test, y_test, classes=3)
    np.testing.assert_array_equal(again.weights, good.weights)  # deterministic: nothing random


def test_probe_reaches_the_minimum(rng):
    x_train, y_train = _blobs(rng, 200, gap=1.0)
    x_test, y_test = _blobs(rng, 50, gap=1.0)
    found = train_probe(x_train, y_train, x_test, y_test, classes=3, l2=0.1)
    xs, _ = standardise(x_train, x_test)
    _, dw, db = probe_loss(found.weights, found.bias, xs, y_train, l2=0.1)
    assert np.max(np.abs(dw)) <= 1e-4 and np.max(np.abs(db)) <= 1e-4


def test_probe_errors(rng):
    with pytest.raises(ValueError, match="same D"):
        train_probe(np.zeros((4, 3)), np.zeros(4, int), np.zeros((2, 2)), np.zeros(2, int), classes=2)


# --- which nodes ----------------------------------------------------------------------------------------------------
def test_probe_nodes_of_the_digit_models():
    assert probe_nodes(Graph(classic_spec())) == ["input", "relu1", "pool1", "relu2", "pool2", "fc"]
    assert probe_nodes(Graph(classic_spec(softmax=True))) == ["input", "relu1", "pool1", "relu2", "pool2", "fc"]
    assert logits_node(Graph(classic_spec(softmax=True))) == "fc"
    assert probe_nodes(Graph(resnet_spec())) == [
        "input", "stem_relu", "pool", "block1a_relu", "block1b_bn", "block1_out", "down_relu", "block2a_relu",
        "block2b_bn", "block2_out", "attention", "att_pool", "fc"]
    assert probe_nodes(Graph(lstm_spec())) == ["input", "lstm", "fc"]
    assert probe_nodes(Graph(gru_attention_spec())) == ["input", "gru", "attention", "fc"]


def test_probe_nodes_are_capped():
    nodes = [{"id": f"fc{i}", "op": "linear", "out_features": 4} for i in range(40)]
    chosen = probe_nodes(Graph({"input_shape": [4], "nodes": nodes}))
    assert len(chosen) == 32 and chosen[0] == "input" and chosen[-1] == "fc39"
