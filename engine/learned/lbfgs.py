"""L-BFGS (Nocedal & Wright, "Numerical Optimization", 2nd ed., algorithms 7.4 and 7.5): minimise a smooth function
of one flat vector from its value and gradient, with a backtracking (Armijo) line search.

The direction is ``-H g``, with ``H`` the inverse-Hessian estimate built from the last ``memory`` steps
``s = x_{k+1} - x_k`` and gradient changes ``y = g_{k+1} - g_k`` by the two-loop recursion, scaled by
``gamma = s.y / y.y``. A pair with ``s.y <= 1e-10 |s| |y|`` is not stored (``s.y > 0`` always holds for a
strictly convex function, but for rounding).
The line search tries the step 1 (``1 / |g|`` on the first iteration, when ``H`` is unknown) and halves it until
``f(x + t d) <= f(x) + 1e-4 t g.d`` (after 40 halvings without it, the search stops: floating point can
tell no lower value along the direction). Deterministic: no randomness anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
MAX_HALVINGS = 40


@dataclass(frozen=True)
class Minimum:
    """``x`` where the search stopped, ``value`` and ``gradient`` there, the ``iterations`` run, whether it
    ``converged`` (largest gradient entry at most ``tol``), and ``values``: the objective after each iteration."""

    x: np.ndarray
    value: float
    gradient: np.ndarray
    iterations: int
    converged: bool
    values: list[float]


def minimize(objective: Objective, x0: np.ndarray, max_iter: int = 500, tol: float = 1e-5, memory: int = 10,
             callback: Callable[[int], None] | None = None) -> Minimum:
    """Minimise ``objective(x) -> (value, gradient)`` from ``x0: (P,)``; ``callback(iteration)`` after each step."""
    x = np.array(x0, dtype=np.float64)
    value, grad = objective(x)
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []  # (s, y, 1 / s.y), oldest first
    values = [value]
    iteration = 0
    while iteration < max_iter and np.max(np.abs(grad), initial=0.0) > tol:
        direction = -_two_loop(grad, steps)
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction (rounding): start again from the steepest descent
            steps.clear()
            direction, slope = -grad, -float(grad @ grad)
        t = 1.0 if steps else 1.0 / max(float(np.linalg.norm(grad)), 1e-12)
        for _ in range(MAX_HALVINGS):
            candidate = x + t * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * t * slope:
                break
            t *= 0.5
        else:  # no step along the direction lowers the value: as low as floating point can tell
            break
        s, y = candidate - x, new_grad - grad
        sy = float(s @ y)
        if sy > 1e-10 * float(np.linalg.norm(s) * np.linalg.norm(y)):  # curvature: relative, so tiny steps count
            steps.append((s, y, 1.0 / sy))
            if len(steps) > memory:
                steps.pop(0)
        x, value, grad = candidate, new_value, new_grad
        iteration += 1
        values.append(value)
        if callback is not None:
            callback(iteration)
    return Minimum(x=x, value=value, gradient=grad, iterations=iteration,
                   converged=bool(np.max(np.abs(grad), initial=0.0) <= tol), values=values)


def _two_loop(grad: np.ndarray, steps: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """``H g`` by the two-loop recursion (algorithm 7.4); ``g`` itself when no step is stored yet."""
    q = grad.copy()
    alphas = []
    for s, y, rho in reversed(steps):
        alpha = rho * float(s @ q)
        q -= alpha * y
        alphas.append(alpha)
    if steps:
        s, y, _ = steps[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), alpha in zip(steps, reversed(alphas)):
        beta = rho * float(y @ q)
        q += (alpha - beta) * s
    return q
