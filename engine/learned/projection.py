"""Points in many dimensions drawn in two: PCA (a linear projection) and t-SNE (a nonlinear map that keeps
neighbours together).

**PCA**: centre ``x: (N, D)``, then the principal axes are the right singular vectors of the centred matrix, found
here as the eigenvectors of the smaller of its two Gram matrices (``D x D`` covariance or ``N x N``). Each axis's
explained variance is ``s_k^2 / (N - 1)``; its ratio divides by the total variance (the sum of every feature's
variance, computed directly). Signs are fixed as scikit-learn fixes them: each projected column's largest-magnitude
entry is positive.

**t-SNE** (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008), exact, following the authors'
reference implementation (``tsne.py``):

1. PCA to ``initial_dims`` = 50 dimensions, squared distances ``d_ij``.
2. Per point, a binary search for the precision ``beta_i = 1 / (2 sigma_i^2)`` such that the conditional
   distribution ``p_{j|i} = exp(-beta_i d_ij) / sum_k exp(-beta_i d_ik)`` has entropy ``log(perplexity)`` nats.
3. ``P = (P_cond + P_cond^T) / 2N``, symmetric, summing to 1 (off-diagonal entries floored at 1e-12, as the
   reference does, then renormalised).
4. ``Y ~ N(0, 1)`` seeded; ``q_ij = (1 + |y_i - y_j|^2)^-1 / Z``; gradient descent on ``KL(P || Q)``, whose
   gradient is ``4 sum_j (p_ij - q_ij)(1 + |y_i - y_j|^2)^-1 (y_i - y_j)``; momentum 0.5 for the first 20
   iterations then 0.8; per-coordinate gains (+0.2 when the gradient's sign differs from the last step's, x0.8
   otherwise, at least 0.01); ``P`` exaggerated x4 for the first 100 iterations; 1,000 iterations; ``Y`` re-centred
   after each step. The reference's step ``eta = 500`` multiplies a gradient without the constant 4, so here the
   learning rate on the exact gradient is 500 / 4 = 125: the same steps.

``KL(P || Q)`` (with the true, unexaggerated ``P``) is recorded every ``record_every`` iterations, from the random
start to the returned embedding. Speed: the
``N x N`` work of one iteration is done in blocks of rows that stay in the processor's cache (``_kl_pass``);
``scripts/bench_representations.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Progress = Callable[[int, int], None]

P_FLOOR = 1e-12
BLOCK_ROWS = 128


# --- PCA ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PCAResult:
    """``coords: (N, K)`` the centred data on the ``K`` principal axes ``components: (K, D)`` (unit rows);
    ``explained_variance: (K,)`` the variance along each axis; ``explained_variance_ratio: (K,)`` that over the
    total variance; ``mean: (D,)`` the centre."""

    coords: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray


def pca(x: np.ndarray, n_components: int = 2) -> PCAResult:
    """Principal component analysis of ``x: (N, D)`` onto ``n_components`` axes (float64 throughout)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pca takes a matrix x: (N, D), got shape {list(x.shape)}")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"pca needs at least 2 points, got {n}")
    if not 1 <= n_components <= min(n, d):
        raise ValueError(f"n_components must be between 1 and min(N, D) = {min(n, d)}, got {n_components}")
    mean = x.mean(axis=0)
    centred = x - mean
    if d <= n:  # eigenvectors of the D x D scatter matrix are the principal axes
        values, vectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(values)[::-1][:n_components]
        components = vectors[:, order].T
        coords = centred @ components.T
    else:  # eigenvectors of the N x N Gram matrix are the left singular vectors u; coords = u s
        values, vectors = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(values)[::-1][:n_components]
        singular = np.sqrt(np.maximum(values[order], 0.0))
        coords = vectors[:, order] * singular
        components = (centred.T @ vectors[:, order] / np.where(singular > 0, singular, 1.0)).T
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(n_components)])
    signs[signs == 0] = 1.0
    coords, components = coords * signs, components * signs[:, None]
    variance = np.maximum(values[order], 0.0) / (n - 1)
    total = float(np.sum(centred * centred)) / (n - 1)
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    return PCAResult(coords=coords, components=components, explained_variance=variance,
                     explained_variance_ratio=ratio, mean=mean)


# --- t-SNE: the input similarities ----------------------------------------------------------------------------------
def squared_distances(x: np.ndarray) -> np.ndarray:
    """``x: (N, D)`` -> ``(N, N)`` squared Euclidean distances (float64, exact zeros on the diagonal, never < 0)."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.sum(x * x, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def conditional_probabilities(distances: np.ndarray, betas: np.ndarray,
                              rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``p_{j|i} = exp(-beta_i d_ij) / sum_{k != i} exp(-beta_i d_ik)`` and each row's entropy in nats.

    ``distances: (R, N)`` squared distances from points ``rows: (R,)`` (default ``0 .. N-1``, a square matrix) to
    every point, ``betas: (R,)``. Returns ``P_cond: (R, N)`` (zero at each point itself, rows sum to 1) and
    ``H: (R,)``, ``H_i = -sum_j p_{j|i} log p_{j|i} = log S_i + beta_i sum_j d'_ij p_{j|i}`` with ``S_i`` the sum of
    the weights ``exp(-beta_i d'_ij)`` and ``d'`` the distances less each row's smallest (the probabilities do not
    change, and nothing underflows to 0 / 0).
    """
    count = distances.shape[0]
    rows = np.arange(count) if rows is None else np.asarray(rows)
    own = (np.arange(count), rows)
    d = distances.astype(np.float64, copy=True)
    d[own] = np.inf
    d -= d.min(axis=1, keepdims=True)
    weights = np.exp(-betas[:, None] * d)  # exp(-inf) = 0 at the point itself
    total = weights.sum(axis=1)
    p = weights / total[:, None]
    d[own] = 0.0
    entropy = np.log(total) + betas * np.sum(d * p, axis=1)
    return p, entropy


def calibrate(distances: np.ndarray, perplexity: float = 30.0, tol: float = 1e-5,
              max_tries: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the ``beta_i`` whose ``p_{.|i}`` has entropy ``log(perplexity)`` (within ``tol`` nats).

    The reference's search, run for every point at once: double (or halve) ``beta_i`` until the target is
    bracketed, then bisect. It starts at ``1 / mean_j d_ij`` rather than the reference's 1, so that features of any
    scale are bracketed in a few steps (entropy falls as beta rises, so the answer is the same).
    Returns ``(P_cond: (N, N), betas: (N,))``.
    """
    n = distances.shape[0]
    if not 1.0 < perplexity < n:
        raise ValueError(f"perplexity must be between 1 and the number of points ({n}), got {perplexity}; "
                         "5 to 50 is usual")
    target = np.log(perplexity)
    mean = distances.sum(axis=1) / max(n - 1, 1)
    beta = 1.0 / np.where(mean > 0, mean, 1.0)
    low = np.full(n, -np.inf)
    high = np.full(n, np.inf)
    p, entropy = conditional_probabilities(distances, beta)
    for _ in range(max_tries):
        diff = entropy - target
        todo = np.abs(diff) > tol
        if not todo.any():
            break
        too_flat = todo & (diff > 0)  # entropy too high: sharpen (raise beta)
        too_sharp = todo & (diff <= 0)
        low[too_flat] = beta[too_flat]
        high[too_sharp] = beta[too_sharp]
        beta = np.where(too_flat, np.where(np.isinf(high), beta * 2.0, (beta + high) / 2.0), beta)
        beta = np.where(too_sharp, np.where(np.isinf(low), beta / 2.0, (beta + low) / 2.0), beta)
        rows = np.flatnonzero(todo)
        p[rows], entropy[rows] = conditional_probabilities(distances[rows], beta[rows], rows)
    return p, beta


def joint_probabilities(p_conditional: np.ndarray) -> np.ndarray:
    """``P = (P_cond + P_cond^T) / 2N``: symmetric, zero diagonal, off-diagonal entries at least 1e-12 (as the
    reference floors them), renormalised to sum to exactly 1."""
    n = p_conditional.shape[0]
    p = (p_conditional + p_conditional.T) / (2.0 * n)
    np.maximum(p, P_FLOOR, out=p)
    np.fill_diagonal(p, 0.0)
    p /= p.sum()
    return p


# --- t-SNE: the objective and its gradient --------------------------------------------------------------------------
def kl_and_gradient(p: np.ndarray, y: np.ndarray, exaggeration: float = 1.0) -> tuple[float, np.ndarray]:
    """``KL(P || Q)`` and its gradient with respect to ``y: (N, 2)``, the loop-free teaching form.

    ``p: (N, N)`` symmetric, zero diagonal, summing to 1. ``q_ij = w_ij / Z`` with ``w_ij = 1 / (1 + |y_i - y_j|^2)``
    (``w_ii = 0``) and ``Z = sum w``. ``dKL/dy_i = 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j)``. With ``exaggeration`` a
    (early exaggeration) the gradient uses ``a p_ij`` in place of ``p_ij``, as the reference does; the KL returned is
    always the true one.
    """
    d = squared_distances(y)
    w = 1.0 / (1.0 + d)
    np.fill_diagonal(w, 0.0)
    z = w.sum()
    q = w / z
    kl = float(np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0])))
    m = (exaggeration * p - q) * w
    grad = 4.0 * (m.sum(axis=1)[:, None] * y - m @ y)
    return kl, grad


def _kl_pass(p: np.ndarray, y: np.ndarray, exaggeration: float, plogp: float | None = None,
             block: int = BLOCK_ROWS) -> tuple[float | None, np.ndarray]:
    """``kl_and_gradient``'s numbers, fast: each pair ``(i, j)`` once, in slabs that stay in the processor's cache.

    The gradient splits into an attractive and a repulsive part, ``4 (a sum_j p_ij w_ij (y_i - y_j) - sum_j w_ij^2
    (y_i - y_j) / Z)``, so ``Z`` is needed only at the end; ``-sum p log q = sum p log(1 + d) + log Z`` gives the KL
    from the same slabs when ``plogp`` (``sum p log p``, a constant) is given. ``w`` and ``p`` are symmetric: the
    slab of rows ``[s, s + block)`` takes the columns ``j > i`` only, and each pair adds its term to both ``i`` and
    ``j`` (half the work of the full matrix; tests compare it with ``kl_and_gradient``). Returns ``(KL or None,
    gradient)``.
    """
    n = y.shape[0]
    sq = np.sum(y * y, axis=1)
    attract = np.zeros_like(y)
    repel = np.zeros_like(y)
    z = 0.0
    cross = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows, cols = slice(start, stop), slice(start, n)
        w = y[rows] @ y[cols].T
        w *= -2.0
        w += (sq[rows] + 1.0)[:, None]
        w += sq[None, cols]  # 1 + |y_i - y_j|^2
        below = np.tril_indices(stop - start)  # pairs j <= i inside the slab: counted in an earlier row, or i itself
        w[:, :stop - start][below] = 1.0  # log 1 = 0: they add nothing to the KL
        p_slab = p[rows, cols]
        if plogp is not None:
            cross += float(np.sum(p_slab * np.log(w)))
        np.reciprocal(w, out=w)
        w[:, :stop - start][below] = 0.0
        pw = p_slab * w
        z += 2.0 * float(w.sum())
        attract[rows] += pw.sum(axis=1)[:, None] * y[rows] - pw @ y[cols]
        attract[cols] += pw.sum(axis=0)[:, None] * y[cols] - pw.T @ y[rows]
        w *= w
        repel[rows] += w.sum(axis=1)[:, None] * y[rows] - w @ y[cols]
        repel[cols] += w.sum(axis=0)[:, None] * y[cols] - w.T @ y[rows]
    grad = 4.0 * (exaggeration * attract - repel / z)
    kl = None if plogp is None else plogp + 2.0 * cross + float(np.log(z))
    return kl, grad


def entropy_term(p: np.ndarray) -> float:
    """``sum_ij p_ij log p_ij`` (0 log 0 = 0): the constant part of ``KL(P || Q)``."""
    positive = p[p > 0]
    return float(np.sum(positive * np.log(positive)))


# --- t-SNE: the optimisation ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TSNEConfig:
    """The reference implementation's settings (``learning_rate`` on the exact gradient: see the module doc)."""

    perplexity: float = 30.0
    initial_dims: int = 50
    iterations: int = 1000
    learning_rate: float = 125.0
    initial_momentum: float = 0.5
    final_momentum: float = 0.8
    momentum_switch: int = 20
    exaggeration: float = 4.0
    exaggeration_iterations: int = 100
    min_gain: float = 0.01
    record_every: int = 10
    seed: int = 0


@dataclass
class TSNEResult:
    """``embedding: (N, 2)``; ``kl: [(steps, KL(P || Q))]``: the KL of the embedding after 0, ``record_every``,
    2 ``record_every``, ... steps and after the last one (the returned embedding's); ``betas: (N,)`` the calibrated
    precisions; ``pca_variance_ratio`` the share of the variance the first PCA kept (1 without one)."""

    embedding: np.ndarray
    kl: list[tuple[int, float]] = field(default_factory=list)
    betas: np.ndarray | None = None
    pca_variance_ratio: float = 1.0

    @property
    def final_kl(self) -> float:
        return self.kl[-1][1]


def input_similarities(x: np.ndarray, config: TSNEConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Steps 1-3: ``x: (N, D)`` -> ``(P: (N, N), betas: (N,), variance ratio kept by the first PCA)``."""
    x = np.asarray(x, dtype=np.float64)
    ratio = 1.0
    if x.shape[1] > config.initial_dims and x.shape[0] > config.initial_dims:
        reduced = pca(x, config.initial_dims)
        x, ratio = reduced.coords, float(reduced.explained_variance_ratio.sum())
    p_conditional, betas = calibrate(squared_distances(x), config.perplexity)
    return joint_probabilities(p_conditional), betas, ratio


def tsne(x: np.ndarray, config: TSNEConfig | None = None, progress: Progress | None = None,
         snapshot: Callable[[int, np.ndarray], None] | None = None) -> TSNEResult:
    """Exact t-SNE of ``x: (N, D)`` into 2 dimensions; ``progress(steps, iterations)`` each time the KL is recorded
    (it may raise to cancel), and ``snapshot(steps, embedding: (N, 2))`` then too (a copy: the embedding so far, to
    watch it form). Deterministic for a given ``config.seed``."""
    config = config or TSNEConfig()
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE takes a matrix x: (N, D) with at least 4 points, got shape {list(x.shape)}")
    p, betas, ratio = input_similarities(x, config)
    n = p.shape[0]
    y = np.random.default_rng(config.seed).standard_normal((n, 2))
    step = np.zeros_like(y)
    gains = np.ones_like(y)
    result = TSNEResult(embedding=y, betas=betas, pca_variance_ratio=ratio)
    plogp = entropy_term(p)
    for iteration in range(1, config.iterations + 1):
        done = iteration - 1  # steps taken so far: the pass below sees the embedding they made
        record = done % config.record_every == 0
        kl, grad = _kl_pass(p, y, config.exaggeration if iteration <= config.exaggeration_iterations else 1.0,
                            plogp if record else None)
        if record:
            result.kl.append((done, float(kl)))
            if progress is not None:
                progress(done, config.iterations)
            if snapshot is not None:
                snapshot(done, y.copy())
        momentum = config.initial_momentum if iteration <= config.momentum_switch else config.final_momentum
        same_sign = (grad > 0) == (step > 0)
        gains = np.where(same_sign, gains * 0.8, gains + 0.2)
        np.maximum(gains, config.min_gain, out=gains)
        step = momentum * step - config.learning_rate * gains * grad
        y = y + step
        y -= y.mean(axis=0)
    kl, _ = _kl_pass(p, y, 1.0, plogp)
    result.kl.append((config.iterations, float(kl)))
    if progress is not None:
        progress(config.iterations, config.iterations)
    if snapshot is not None:
        snapshot(config.iterations, y.copy())
    result.embedding = y
    return result
