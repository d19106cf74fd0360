"""PCA: a hand-worked case, both eigen-decompositions (N > D and N < D) against an SVD and PyTorch up to sign,
and the explained variance."""

from __future__ import annotations

import numpy as np
import pytest

from engine.learned.projection import pca


def test_pca_by_hand():
    # points on the line y = x, plus a little along y = -x: the first axis is (1, 1) / sqrt 2
    x = np.array([[-2.0, -2.0], [-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.1, -0.1], [-0.1, 0.1]])
    found = pca(x, 2)
    np.testing.assert_allclose(found.mean, [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(np.abs(found.components[0]), [2 ** -0.5, 2 ** -0.5], rtol=1e-12)
    # variance along (1, 1)/sqrt2: coordinates 2 sqrt2 k for k = -2..2 and 0, 0 -> sum of squares 8 * 10 = 20
    # along (1, -1)/sqrt2: 0.1 sqrt2 twice -> 0.04; over N - 1 = 6
    np.testing.assert_allclose(found.explained_variance, [20 / 6, 0.04 / 6], rtol=1e-12)
    np.testing.assert_allclose(found.explained_variance_ratio, [20 / 20.04, 0.04 / 20.04], rtol=1e-12)
    # the largest-magnitude entry is made positive; rows 0 and 4 tie, and the first one wins (argmax)
    np.testing.assert_allclose(found.coords[[0, 4], 0], [2 * np.sqrt(2), -2 * np.sqrt(2)], rtol=1e-12)


def _reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    return u[:, :k] * s[:k], vt[:k], s[:k] ** 2 / np.sum(s ** 2)


@pytest.mark.parametrize("shape", [(200, 30), (40, 300)])  # the D x D and the N x N eigen-decompositions
def test_pca_matches_an_svd_up_to_sign(rng, shape):
    x = rng.standard_normal(shape) * np.linspace(3.0, 0.1, shape[1]) + 5.0
    found = pca(x, 5)
    coords, components, ratio = _reference(x, 5)
    signs = np.sign(np.sum(found.components * components, axis=1))
    np.testing.assert_allclose(found.coords, coords * signs, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(found.components, components * signs[:, None], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(found.explained_variance_ratio, ratio, rtol=1e-9)
    np.testing.assert_allclose(found.components @ found.components.T, np.eye(5), atol=1e-9)
    # negative control: the comparison would see a wrong axis
    assert not np.allclose(found.coords[:, [1, 0, 2, 3, 4]], coords * signs, rtol=1e-3)


@pytest.mark.torch
def test_pca_matches_pytorch(torch_or_skip, rng):
    torch = torch_or_skip
    rotation, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    x = (rng.standard_normal((300, 40)) * 10 * 0.6 ** np.arange(40)) @ rotation  # clear gaps between the axes
    found = pca(x, 3)
    t = torch.tensor(x)
    u, s, _ = torch.linalg.svd(t - t.mean(dim=0), full_matrices=False)
    theirs = (u[:, :3] * s[:3]).numpy()
    signs = np.sign(np.sum(found.coords * theirs, axis=0))
    np.testing.assert_allclose(found.coords, theirs * signs, rtol=1e-7, atol=1e-8)
    total = float((s ** 2).sum())
    np.testing.assert_allclose(found.explained_variance_ratio, (s[:3] ** 2).numpy() / total, rtol=1e-9)
    torch.manual_seed(0)  # torch's own PCA is randomised (oversampled to 6 axes here): close, not equal
    *_, low_v = torch.pca_lowrank(t, q=6, center=True, niter=6)
    np.testing.assert_allclose(np.abs(found.components), np.abs(low_v[:, :3].numpy().T), atol=1e-6)


def test_pca_signs_and_errors(rng):
    x = rng.standard_normal((50, 4))
    found = pca(x, 4)
    biggest = found.coords[np.argmax(np.abs(found.coords), axis=0), np.arange(4)]
    assert np.all(biggest > 0)
    with pytest.raises(ValueError, match="between 1 and min"):
        pca(x, 5)
    with pytest.raises(ValueError, match="at least 2 points"):
        pca(x[:1], 1)
    assert pca(np.ones((5, 3)), 1).explained_variance_ratio[0] == 0.0  # no variance at all: no division by zero
