"""Softmax cross-entropy, the classification loss training uses on a network's logits."""

from __future__ import annotations

import numpy as np

from engine.errors import ShapeError
from engine.layers.softmax import log_softmax_forward


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer labels, and its gradient.

    ``loss = -mean_n log softmax(logits)[n, labels[n]]`` (PyTorch's ``F.cross_entropy``);
    ``dlogits = (softmax(logits) - onehot(labels)) / N``.

    Shape: logits: (N, K); labels: (N,) ints in [0, K); returns (loss: float, dlogits: (N, K)).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ShapeError(f"logits must be (N, K), one row of K class scores per sample; got shape {list(logits.shape)}")
    n, k = logits.shape
    if labels.shape != (n,):
        raise ShapeError(f"labels must be (N,) = ({n},), one class index per row of logits; "
                         f"got shape {list(labels.shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ShapeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ShapeError(f"labels must lie in [0, {k}) for {k} classes; "
                         f"got values from {labels.min()} to {labels.max()}")
    log_probs, _ = log_softmax_forward(logits, dim=1)
    rows = np.arange(n)
    loss = float(-log_probs[rows, labels].mean())
    dlogits = np.exp(log_probs)
    dlogits[rows, labels] -= 1
    dlogits /= n
    return loss, dlogits
