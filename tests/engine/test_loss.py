"""Softmax cross-entropy: a hand-worked value, a gradient check with a negative control, PyTorch, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShapeError
from engine.gradcheck import numeric_gradient, relative_error
from engine.layers.loss import softmax_cross_entropy


def test_by_hand():
    # Row 0: softmax([0, ln 3]) = [1/4, 3/4], label 1 -> -ln(3/4). Row 1: equal logits over 4 classes -> ln 4.
    # (classes 2 and 3 of row 0 have logit -50: probability e^-50, negligible)
    logits = np.array([[0.0, np.log(3.0), -50.0, -50.0], [1.0, 1.0, 1.0, 1.0]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 2]))
    np.testing.assert_allclose(loss, (-np.log(0.75) + np.log(4.0)) / 2, rtol=1e-12)
    np.testing.assert_allclose(dlogits[1], [0.125, 0.125, -0.375, 0.125])  # (softmax - onehot) / N
    np.testing.assert_allclose(dlogits[0, :2], [0.125, -0.125], atol=1e-12)


def test_gradient_check_and_negative_control(rng):
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, size=5)
    _, dlogits = softmax_cross_entropy(logits, labels)
    numeric = numeric_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    assert relative_error(dlogits, numeric) < 1e-7
    assert relative_error(dlogits * 5, numeric) > 0.5, "negative control: forgetting the mean over N must fail"


def test_stable_for_huge_logits():
    loss, dlogits = softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32),
                                          np.array([0, 0]))
    np.testing.assert_allclose(loss, 500.0, rtol=1e-6)
    assert dlogits.dtype == np.float32 and np.all(np.isfinite(dlogits))


def test_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    logits = rng.standard_normal((8, 10)) * 4
    labels = rng.integers(0, 10, size=8)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(dlogits, t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_errors():
    with pytest.raises(ShapeError, match=r"labels must lie in \[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ShapeError, match=r"labels must be \(N,\) = \(2,\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ShapeError, match=r"logits must be \(N, K\)"):
        softmax_cross_entropy(np.zeros((2, 3, 1)), np.array([0, 1]))
    with pytest.raises(ShapeError, match="integer class indices"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
