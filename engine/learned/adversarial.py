"""Adversarial examples: inputs changed by at most ε per pixel that the network gets wrong.

Both attacks work in **pixel space**: on the pixels ``p`` in [0, 1] that the model's preprocessing normalises,
``x = (p - mean) / std`` per channel (after any greyscale conversion and inversion; ``PixelSpace``). The
perturbation ``δ`` is bounded in L∞ (``|δ| ≤ ε`` for every pixel) and the adversarial pixels ``p + δ`` stay in
[0, 1], so an adversarial input is a picture one could save and show.

- **FGSM** (Goodfellow, Shlens & Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015): one step
  ``δ = ε · sign(∇_p L)``, then clipped so that ``p + δ`` stays in [0, 1].
- **PGD** (Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models resistant to adversarial
  attacks", ICLR 2018): ``steps`` steps ``δ ← Π(δ + α · sign(∇_p L))``, where ``Π`` projects back onto the ε-ball
  and the [0, 1] box; optionally from a random start ``δ₀ ~ U(-ε, ε)`` (seeded).

``L`` is the softmax cross-entropy of the logits (``engine.layers.loss``). Untargeted, the attack *raises* the
loss of the true (or predicted) class; targeted, it *lowers* the loss of a chosen class (``δ`` steps along
``-sign(∇_p L_target)``). The gradient with respect to the pixels is the graph's input gradient times
``∂x/∂p = 1/std`` (the chain through the normalisation): ``∇_p L = ∇_x L / std``.

The pixel arithmetic is in float64 (so that ``|δ| ≤ ε`` holds exactly and FGSM's step is exactly ``±ε``); the
model sees its input in ``dtype`` (float32 for the shipped weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.graph import Graph
from engine.layers.loss import softmax_cross_entropy
from engine.training import logits_node

Method = Literal["fgsm", "pgd"]
METHODS: tuple[str, ...] = ("fgsm", "pgd")
#: Called as ``progress(done, total)`` after each step (PGD) or batch (curves); may raise to stop the work.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PixelSpace:
    """The map between pixels in [0, 1] and the model's input, per channel: ``x = (p - mean) / std``.

    ``mean, std: (C,)`` (or one value for every channel); ``p, x: (N, C, ...)``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"every std must be positive, got {list(self.std)}")

    def _per_channel(self, values: tuple[float, ...], ndim: int) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))

    def to_input(self, pixels: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """``p: (N, C, ...)`` in [0, 1] -> the model's input ``(p - mean) / std`` in ``dtype``."""
        mean, std = self._per_channel(self.mean, pixels.ndim), self._per_channel(self.std, pixels.ndim)
        return ((np.asarray(pixels, dtype=np.float64) - mean) / std).astype(dtype)

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """The model's input ``x: (N, C, ...)`` -> its pixels ``x · std + mean`` (float64)."""
        mean, std = self._per_channel(self.mean, x.ndim), self._per_channel(self.std, x.ndim)
        return np.asarray(x, dtype=np.float64) * std + mean

    def pixel_gradient(self, input_gradient: np.ndarray) -> np.ndarray:
        """``∇_x L`` -> ``∇_p L = ∇_x L · ∂x/∂p = ∇_x L / std`` (float64)."""
        return np.asarray(input_gradient, dtype=np.float64) / self._per_channel(self.std, input_gradient.ndim)


@dataclass
class Attack:
    """An attack's outcome on ``N`` inputs.

    ``pixels``: the adversarial pixels ``(N, C, ...)`` in [0, 1]; ``perturbation``: ``δ = pixels - original``, with
    ``|δ| ≤ ε`` (float64, exact); ``x``: the adversarial model input ``(N, C, ...)``; ``logits: (N, K)`` of ``x``;
    ``losses: (N,)`` the cross-entropy of the attacked label (the true one, or the target) at ``x``.
    """

    pixels: np.ndarray
    perturbation: np.ndarray
    x: np.ndarray
    logits: np.ndarray
    losses: np.ndarray


def per_sample_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[n, labels[n]]`` for each row: ``logits: (N, K)``, ``labels: (N,)`` -> ``(N,)``."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def loss_and_pixel_gradient(graph: Graph, params: Mapping[str, np.ndarray], space: PixelSpace, pixels: np.ndarray,
                            labels: np.ndarray, dtype: type = np.float32
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each input's cross-entropy loss and its gradient with respect to the pixels.

    ``pixels: (N, C, ...)`` in [0, 1], ``labels: (N,)`` -> ``losses: (N,)``, ``∇_p L_n: (N, C, ...)`` (float64),
    ``logits: (N, K)``. Row ``n`` of the gradient is that of input ``n``'s own loss (the gradient of the *sum* of
    the losses; ``softmax_cross_entropy`` averages, so its ``dlogits`` is scaled back by ``N``).
    """
    x = space.to_input(pixels, dtype)
    node = logits_node(graph)
    trace = graph.forward(x, params, training=False, keep_caches=True, stop_at=node)
    logits = trace.activations[node]
    _, dlogits = softmax_cross_entropy(logits, labels)
    dlogits = (dlogits * len(labels)).astype(logits.dtype)
    grads = graph.backward(trace, {node: dlogits}, params=False)
    return per_sample_losses(logits, labels), space.pixel_gradient(grads.input), logits


def project(delta: np.ndarray, pixels: np.ndarray, epsilon: float) -> np.ndarray:
    """``δ`` clipped to the ε-ball (``|δ| ≤ ε``) and to the box (``0 ≤ p + δ ≤ 1``): ``[max(-ε, -p), min(ε, 1 - p)]``
    elementwise. The interval holds 0 for pixels in [0, 1], so the result is never empty."""
    low = np.maximum(-epsilon, -pixels)
    high = np.minimum(epsilon, 1.0 - pixels)
    return np.clip(delta, low, high)


def check_pixels(pixels: np.ndarray, tolerance: float = 1e-4) -> np.ndarray:
    """``pixels`` as float64 clipped to [0, 1]; ValueError when some lie further than ``tolerance`` outside (the
    input is then not a picture normalised as the model expects)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if low < -tolerance or high > 1 + tolerance:
        raise ValueError(f"the input's pixels (x · std + mean) range from {low:.4g} to {high:.4g}, outside [0, 1]: "
                         "send a picture, or a tensor normalised as the model's preprocessing says")
    return np.clip(pixels, 0.0, 1.0)


def _check_epsilon(epsilon: float) -> None:
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon is the largest change of a pixel in [0, 1], so it lies in [0, 1]; got {epsilon}")


def _direction(targeted: bool) -> float:
    """+1 to climb the loss of the true class (untargeted), -1 to descend that of the target (targeted)."""
    return -1.0 if targeted else 1.0


def _attack(graph: Graph, params: Mapping[str, np.ndarray], space: PixelSpace, pixels: np.ndarray,
            delta: np.ndarray, labels: np.ndarray, dtype: type) -> Attack:
    adversarial = np.clip(pixels + delta, 0.0, 1.0)
    x = space.to_input(adversarial, dtype)
    node = logits_node(graph)
    logits = graph.forward(x, params, training=False, keep_caches=False, stop_at=node, keep=()).output
    return Attack(adversarial, delta, x, logits, per_sample_losses(logits, labels))


def fgsm(graph: Graph, params: Mapping[str, np.ndarray], space: PixelSpace, pixels: np.ndarray,
         labels: np.ndarray, epsilon: float, targeted: bool = False, dtype: type = np.float32) -> Attack:
    """The fast gradient sign method: ``δ = ε · sign(∇_p L)`` (``-`` for a targeted attack), clipped to the box.

    ``pixels: (N, C, ...)`` in [0, 1]; ``labels: (N,)``: the true classes (untargeted) or the targets (targeted).
    """
    _check_epsilon(epsilon)
    pixels = check_pixels(pixels)
    _, gradient, _ = loss_and_pixel_gradient(graph, params, space, pixels, labels, dtype)
    delta = project(_direction(targeted) * epsilon * np.sign(gradient), pixels, epsilon)
    return _attack(graph, params, space, pixels, delta, labels, dtype)


def default_alpha(epsilon: float, steps: int) -> float:
    """PGD's step size when none is given: ``2.5 · ε / steps``, the rule of Madry's group's ``robustness`` library,
    so that the steps can cross the ball from any starting point."""
    return 2.5 * epsilon / steps


def pgd(graph: Graph, params: Mapping[str, np.ndarray], space: PixelSpace, pixels: np.ndarray, labels: np.ndarray,
        epsilon: float, steps: int = 10, alpha: float | None = None, random_start: bool = False, seed: int = 0,
        targeted: bool = False, dtype: type = np.float32, progress: Progress | None = None) -> Attack:
    """Projected gradient descent in L∞: ``δ ← Π(δ + α · sign(∇_p L))`` ``steps`` times (``-`` when targeted),
    ``Π`` = ``project`` (ε-ball and [0, 1] box); from ``δ = 0``, or from ``U(-ε, ε)`` seeded by ``seed``.

    ``pixels: (N, C, ...)`` in [0, 1]; ``labels: (N,)`` as in ``fgsm``; ``alpha``: default ``default_alpha``.
    """
    _check_epsilon(epsilon)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    alpha = default_alpha(epsilon, steps) if alpha is None else alpha
    if not alpha > 0:
        raise ValueError(f"alpha (the step size) must be positive, got {alpha}")
    pixels = check_pixels(pixels)
    if random_start:
        delta = project(np.random.default_rng(seed).uniform(-epsilon, epsilon, pixels.shape), pixels, epsilon)
    else:
        delta = np.zeros_like(pixels)
    sign = _direction(targeted)
    for step in range(steps):
        _, gradient, _ = loss_and_pixel_gradient(graph, params, space, np.clip(pixels + delta, 0.0, 1.0), labels,
                                                 dtype)
        delta = project(delta + sign * alpha * np.sign(gradient), pixels, epsilon)
        if progress is not None:
            progress(step + 1, steps)
    return _attack(graph, params, space, pixels, delta, labels, dtype)


def predict(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The logits ``(N, K)`` of the model inputs ``x: (N, C, ...)``, ``batch_size`` at a time."""
    node = logits_node(graph)
    return np.concatenate([graph.forward(x[i:i + batch_size], params, training=False, keep_caches=False,
                                         stop_at=node, keep=()).output for i in range(0, len(x), batch_size)])


def correctly_classified(graph: Graph, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, n: int
                         ) -> np.ndarray:
    """The indices of the first ``n`` inputs of ``x: (M, C, ...)`` the model classifies as ``y: (M,)``."""
    right = np.flatnonzero(predict(graph, params, x).argmax(axis=1) == y)
    return right[:n]


@dataclass
class RobustnessCurve:
    """Accuracy against ε on ``n`` labelled inputs.

    ``epsilons: (E,)``; ``accuracy: (E,)``: the share of all ``n`` inputs still classified right at each ε
    (at ε = 0, the clean accuracy); ``flip_rate: (E,)``: the share of the inputs classified right at ε = 0 that the
    attack makes wrong; ``correct``: how many inputs were right at ε = 0.
    """

    epsilons: np.ndarray
    accuracy: np.ndarray
    flip_rate: np.ndarray
    n: int
    correct: int


def robustness_curve(graph: Graph, params: Mapping[str, np.ndarray], space: PixelSpace, pixels: np.ndarray,
                     labels: np.ndarray, epsilons: Sequence[float], method: Method = "fgsm", steps: int = 10,
                     alpha_ratio: float | None = None, batch_size: int = 100, dtype: type = np.float32,
                     progress: Progress | None = None) -> RobustnessCurve:
    """Untargeted ``method`` at each ε of ``epsilons`` on ``pixels: (N, C, ...)`` with their ``labels: (N,)``,
    ``batch_size`` inputs at a time. PGD takes ``steps`` steps of ``alpha_ratio · ε`` (default
    ``default_alpha``), from ``δ = 0``. ``progress(done, total)`` counts batches over all ε."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    pixels = check_pixels(pixels)
    epsilons = np.asarray(epsilons, dtype=np.float64)
    n = len(labels)
    clean = predict(graph, params, space.to_input(pixels, dtype), batch_size).argmax(axis=1) == labels
    starts = range(0, n, batch_size)
    total, done = len(epsilons) * len(starts), 0
    accuracy, flip_rate = [], []
    for epsilon in epsilons:
        right = np.zeros(n, dtype=bool)
        for i in starts:
            part = slice(i, i + batch_size)
            if epsilon == 0:
                right[part] = clean[part]
            else:
                if method == "fgsm":
                    attack = fgsm(graph, params, space, pixels[part], labels[part], float(epsilon), dtype=dtype)
                else:
                    alpha = None if alpha_ratio is None else alpha_ratio * float(epsilon)
                    attack = pgd(graph, params, space, pixels[part], labels[part], float(epsilon), steps, alpha,
                                 dtype=dtype)
                right[part] = attack.logits.argmax(axis=1) == labels[part]
            done += 1
            if progress is not None:
                progress(done, total)
        accuracy.append(right.mean() if n else 0.0)
        flip_rate.append((clean & ~right).sum() / max(int(clean.sum()), 1))
    return RobustnessCurve(epsilons, np.asarray(accuracy), np.asarray(flip_rate), n, int(clean.sum()))
