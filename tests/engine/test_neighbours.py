"""Nearest neighbours by cosine similarity: by hand, ties, zero vectors, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.learned.neighbours import cosine_similarities, nearest


def test_cosine_by_hand():
    gallery = np.array([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    sims = cosine_similarities(np.array([2.0, 0.0]), gallery)
    np.testing.assert_allclose(sims, [1.0, 2 ** -0.5, -1.0, 0.0, 0.0], atol=1e-15)  # zeros: no direction, 0


def test_nearest_orders_by_similarity_then_index():
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    found = nearest(np.array([1.0, 0.0]), gallery, k=3)
    assert [n.index for n in found] == [1, 2, 3]  # 1 and 2 tie at 1.0: the lower index first
    assert found[2].similarity == pytest.approx(2 ** -0.5)
    assert len(nearest(np.array([1.0, 0.0]), gallery, k=10)) == 4


def test_scale_does_not_matter(rng):
    gallery = rng.standard_normal((6, 5))
    query = rng.standard_normal(5)
    np.testing.assert_allclose(cosine_similarities(query * 7, gallery * 0.1), cosine_similarities(query, gallery))


def test_errors():
    with pytest.raises(ValueError, match="k must be at least 1"):
        nearest(np.ones(2), np.ones((3, 2)), k=0)
    with pytest.raises(ValueError, match="the query has 3 features"):
        cosine_similarities(np.ones(3), np.ones((3, 2)))
