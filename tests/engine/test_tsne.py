"""t-SNE: the perplexity calibration (entropy, rows, by hand), the joint P (by hand, symmetric), KL(P || Q) by hand
and its gradient by central differences (with a negative control), the fast pass against the plain one, KL falling
after early exaggeration, separated clusters staying separated, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from engine.gradcheck import numeric_gradient, relative_error
from engine.learned.projection import (
    TSNEConfig,
    _kl_pass,
    calibrate,
    conditional_probabilities,
    entropy_term,
    joint_probabilities,
    kl_and_gradient,
    squared_distances,
    tsne,
)


def _clusters(rng: np.random.Generator, per: int = 25, dims: int = 10, gap: float = 20.0) -> tuple[np.ndarray, ...]:
    centres = np.eye(3, dims) * gap
    x = np.concatenate([c + rng.standard_normal((per, dims)) for c in centres])
    return x, np.repeat(np.arange(3), per)


# --- input similarities ---------------------------------------------------------------------------------------------
def test_conditional_probabilities_by_hand():
    # points 0, 1, 3 on a line: squared distances from point 0 are 1 and 9; beta = ln 2 / 8 makes the weights
    # exp(-beta) and exp(-9 beta), whose ratio is exp(8 beta) = 2: p = (2/3, 1/3)
    d = squared_distances(np.array([[0.0], [1.0], [3.0]]))
    np.testing.assert_array_equal(d, [[0, 1, 9], [1, 0, 4], [9, 4, 0]])
    p, h = conditional_probabilities(d, np.full(3, np.log(2) / 8))
    np.testing.assert_allclose(p[0], [0, 2 / 3, 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(h[0], -(2 / 3) * np.log(2 / 3) - (1 / 3) * np.log(1 / 3), rtol=1e-12)
    # point 1 is 1 and 4 away: ratio exp(3 beta) = 2^(3/8)
    r = 2 ** (3 / 8)
    np.testing.assert_allclose(p[1], [r / (1 + r), 0, 1 / (1 + r)], rtol=1e-12)


def test_calibration_reaches_the_perplexity(rng):
    x, _ = _clusters(rng)
    p, betas = calibrate(squared_distances(x), perplexity=10.0)
    _, entropy = conditional_probabilities(squared_distances(x), betas)
    np.testing.assert_allclose(entropy, np.log(10.0), atol=1e-5)  # H = log(perplexity), every row
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.diag(p) == 0)
    perplexity = np.exp(-np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1))
    np.testing.assert_allclose(perplexity, 10.0, rtol=1e-4)


def test_equidistant_points_give_uniform_rows():
    # three points at the same distance 2 from each other (one-hot vectors): whatever beta, each point's two
    # neighbours share 1/2, an entropy of log 2 (perplexity 2)
    x = np.eye(3)
    p, _ = calibrate(squared_distances(x), perplexity=2.0)
    np.testing.assert_allclose(p, (1 - np.eye(3)) / 2, rtol=1e-12)


def test_calibration_works_at_any_scale(rng):
    x, _ = _clusters(rng)
    for scale in (1e-3, 1e4):  # the reference's start at beta = 1 would under- or overflow here
        _, betas = calibrate(squared_distances(x * scale), perplexity=10.0)
        _, entropy = conditional_probabilities(squared_distances(x * scale), betas)
        np.testing.assert_allclose(entropy, np.log(10.0), atol=1e-5)


def test_joint_probabilities_by_hand():
    conditional = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])
    p = joint_probabilities(conditional)
    # p_ij = (p_j|i + p_i|j) / 2N: p_01 = (0.5 + 1) / 6, p_02 = (0.5 + 0.25) / 6, p_12 = (0 + 0.75) / 6
    expected = np.array([[0, 0.25, 0.125], [0.25, 0, 0.125], [0.125, 0.125, 0]])
    np.testing.assert_allclose(p, expected, rtol=1e-10)
    np.testing.assert_array_equal(p, p.T)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)


def test_joint_probabilities_floor_tiny_entries():
    conditional = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float)
    p = joint_probabilities(conditional)
    assert p[0, 2] == pytest.approx(1e-12, rel=1e-6) and np.all(np.diag(p) == 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)


# --- the objective --------------------------------------------------------------------------------------------------
def test_kl_by_hand():
    # y = (0,0), (1,0), (0,1): w = 1/2, 1/2, 1/3, Z = 2 (1/2 + 1/2 + 1/3) = 8/3, q = 3/16, 3/16, 1/8
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = (1 - np.eye(3)) / 6
    kl, grad = kl_and_gradient(p, y)
    assert kl == pytest.approx((2 / 3) * np.log(8 / 9) + (1 / 3) * np.log(4 / 3), rel=1e-12)
    # dKL/dy_0 = 4 sum_j (p_0j - q_0j) w_0j (y_0 - y_j) = 4 (1/6 - 3/16)(1/2) [(-1, 0) + (0, -1)] = (1/24, 1/24)
    np.testing.assert_allclose(grad[0], [1 / 24, 1 / 24], rtol=1e-12)
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-15)  # translation leaves the KL unchanged


def _random_p(rng, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 5))
    return joint_probabilities(calibrate(squared_distances(x), perplexity=4.0)[0])


def test_kl_gradient_check_and_negative_control(rng):
    p = _random_p(rng, 12)
    y = rng.standard_normal((12, 2))
    _, grad = kl_and_gradient(p, y)
    numeric = numeric_gradient(lambda: kl_and_gradient(p, y)[0], y)
    assert relative_error(grad, numeric) < 1e-7
    assert relative_error(grad / 4, numeric) > 0.5, "negative control: the reference's gradient without the 4 fails"
    _, wrong = kl_and_gradient(p, y, exaggeration=1.5)
    assert relative_error(wrong, numeric) > 0.05, "negative control: an exaggerated P is not the KL's gradient"


@pytest.mark.parametrize(("n", "block"), [(12, 5), (50, 7), (64, 64), (130, 128)])
def test_fast_pass_matches_the_plain_form(rng, n, block):
    p = _random_p(rng, n)
    y = rng.standard_normal((n, 2)) * 3
    for exaggeration in (1.0, 4.0):
        kl, grad = kl_and_gradient(p, y, exaggeration)
        fast_kl, fast_grad = _kl_pass(p, y, exaggeration, entropy_term(p), block=block)
        assert fast_kl == pytest.approx(kl, rel=1e-12)
        np.testing.assert_allclose(fast_grad, grad, rtol=1e-10, atol=1e-14)
    assert _kl_pass(p, y, 1.0, None, block=block)[0] is None


# --- the optimisation -----------------------------------------------------------------------------------------------
SMALL = TSNEConfig(perplexity=10.0, iterations=300, seed=3)


def test_kl_falls_after_early_exaggeration(rng):
    x, _ = _clusters(rng)
    result = tsne(x, SMALL)
    after = [kl for iteration, kl in result.kl if iteration >= SMALL.exaggeration_iterations]
    assert len(after) == 21
    # with momentum the KL may rise for a few iterations; over every 50 it falls, and near the end steadily
    assert all(later < earlier for earlier, later in zip(after, after[5:])), after
    assert all(later < earlier for earlier, later in zip(after[-6:], after[-5:])), after[-6:]
    assert after[-1] < 0.5 * after[0]
    assert result.kl[-1] == (300, result.final_kl)
    assert result.kl[0][0] == 0 and result.kl[0][1] > after[0]  # the random start is worse
    final, _ = kl_and_gradient(joint_probabilities(calibrate(squared_distances(x), 10.0)[0]), result.embedding)
    assert result.final_kl == pytest.approx(final, rel=1e-9)  # the recorded KL is the returned embedding's


def test_separated_clusters_stay_separated(rng):
    x, labels = _clusters(rng)
    y = tsne(x, SMALL).embedding
    d = squared_distances(y)
    np.fill_diagonal(d, np.inf)
    assert np.all(labels[np.argmin(d, axis=1)] == labels)  # every point's nearest neighbour is in its cluster
    within = max(np.sqrt(d[np.ix_(labels == c, labels == c)][np.isfinite(d[np.ix_(labels == c, labels == c)])]).max()
                 for c in range(3))
    between = min(np.sqrt(d[np.ix_(labels == a, labels == b)]).min() for a in range(3) for b in range(3) if a != b)
    assert between > within, (between, within)
    # negative control: the same check on shuffled labels fails
    shuffled = np.random.default_rng(0).permutation(labels)
    assert not np.all(shuffled[np.argmin(d, axis=1)] == shuffled)


def test_seeded_and_deterministic(rng):
    x, _ = _clusters(rng, per=10)
    config = TSNEConfig(perplexity=5.0, iterations=120)
    first, again = tsne(x, config), tsne(x, config)
    np.testing.assert_array_equal(first.embedding, again.embedding)
    other = tsne(x, TSNEConfig(perplexity=5.0, iterations=120, seed=1))
    assert not np.allclose(first.embedding, other.embedding)


def test_progress_and_pca_first(rng):
    x = rng.standard_normal((60, 80))
    calls, frames = [], []
    result = tsne(x, TSNEConfig(perplexity=5.0, iterations=40), progress=lambda done, total: calls.append(done),
                  snapshot=lambda done, y: frames.append((done, y)))
    assert calls == [0, 10, 20, 30, 40] and [done for done, _ in frames] == calls
    np.testing.assert_array_equal(frames[-1][1], result.embedding)
    assert not np.array_equal(frames[0][1], frames[1][1])  # copies, not the embedding changing under the caller
    assert 0 < result.pca_variance_ratio < 1  # 80 dims were reduced to 50 first
    assert result.betas.shape == (60,) and np.all(result.betas > 0)


def test_errors(rng):
    with pytest.raises(ValueError, match="perplexity must be between 1 and the number of points"):
        calibrate(squared_distances(rng.standard_normal((10, 2))), perplexity=30.0)
    with pytest.raises(ValueError, match="at least 4 points"):
        tsne(rng.standard_normal((3, 2)))
