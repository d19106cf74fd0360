"""Nearest neighbours at a layer: which of a gallery of examples a query resembles, in one node's features.

Similarity is the cosine of the angle between two feature vectors (``engine.learned.features``: the activation
flattened, or average-pooled then flattened when large): ``cos(a, b) = a.b / (|a| |b|)``, from -1 to 1 (after a
ReLU every feature is >= 0, so from 0 to 1). A vector of zeros has no direction: its similarity to anything is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbour:
    """Gallery row ``index`` and its cosine ``similarity`` to the query."""

    index: int
    similarity: float


def cosine_similarities(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``query: (D,)``, ``gallery: (M, D)`` -> ``(M,)`` cosines (float64; 0 where either vector is all zeros)."""
    query = np.asarray(query, dtype=np.float64).ravel()
    gallery = np.asarray(gallery, dtype=np.float64).reshape(len(gallery), -1)
    if gallery.shape[1] != query.size:
        raise ValueError(f"the query has {query.size} features, the gallery's rows {gallery.shape[1]}")
    norms = np.linalg.norm(gallery, axis=1) * np.linalg.norm(query)
    dots = gallery @ query
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def nearest(query: np.ndarray, gallery: np.ndarray, k: int) -> list[Neighbour]:
    """The ``k`` gallery rows most similar to ``query``, most similar first (ties: the lower index first)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    similarities = cosine_similarities(query, gallery)
    order = np.lexsort((np.arange(len(similarities)), -similarities))[:k]
    return [Neighbour(index=int(i), similarity=float(similarities[i])) for i in order]
