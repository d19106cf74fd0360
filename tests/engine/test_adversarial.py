"""Adversarial examples (engine.learned.adversarial): the pixel-space gradient checked by central differences (with
a negative control) and against PyTorch, FGSM's exact sign step and clipping, the ε-ball, PGD against FGSM, targeted
attacks, the issue's goal on the shipped digit models, and the accuracy-against-ε curve."""

from __future__ import annotations

import numpy as np
import pytest

from engine.datasets.mnist import load_mnist
from engine.gradcheck import numeric_gradient, relative_error
from engine.graph import Graph
from engine.learned.adversarial import (
    PixelSpace,
    check_pixels,
    correctly_classified,
    fgsm,
    loss_and_pixel_gradient,
    per_sample_losses,
    pgd,
    predict,
    project,
    robustness_curve,
)
from engine.models.registry import load_model

DIGIT_MODELS = ["digits_classic", "digits_resnet", "digits_lstm", "digits_gru_attention"]


@pytest.fixture(scope="module")
def classic():
    return load_model("digits_classic")


@pytest.fixture(scope="module")
def held_out():
    """The held-out digits as pixels in [0, 1] and their labels."""
    return load_mnist("test", normalize=False)


def space_of(bundle) -> PixelSpace:
    return PixelSpace(bundle.preprocessing.mean, bundle.preprocessing.std)


def right_digits(bundle, held_out, n):
    """The first ``n`` held-out digits ``bundle`` classifies right: pixels ``(n, 1, 28, 28)``, labels ``(n,)``."""
    pixels, labels = held_out
    space = space_of(bundle)
    index = correctly_classified(bundle.graph, bundle.params, space.to_input(pixels), labels, n)
    assert len(index) == n
    return pixels[index], labels[index]


def small_net(seed: int = 0) -> tuple[Graph, dict]:
    """A tiny conv net in float64 (conv, ReLU, max pool, linear) for central differences."""
    graph = Graph({"input_shape": [3, 6, 6], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "relu", "op": "relu"},
        {"id": "pool", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 5},
    ]})
    params = {k: v.astype(np.float64) * 3 for k, v in graph.init_params(seed).items()}
    return graph, params


# --- the pixel space and its gradient --------------------------------------------------------------------------


def test_pixel_space_by_hand():
    space = PixelSpace(mean=(0.5, 0.25), std=(0.25, 0.5))
    pixels = np.array([1.0, 0.0]).reshape(1, 2, 1, 1)
    x = space.to_input(pixels, np.float64)
    np.testing.assert_array_equal(x.ravel(), [2.0, -0.5])  # (1 - 0.5) / 0.25, (0 - 0.25) / 0.5
    np.testing.assert_array_equal(space.to_pixels(x), pixels)
    # dL/dp = dL/dx · dx/dp = dL/dx / std
    np.testing.assert_array_equal(space.pixel_gradient(np.ones((1, 2, 1, 1))).ravel(), [4.0, 2.0])


def test_pixel_space_refuses_bad_statistics():
    with pytest.raises(ValueError, match="positive"):
        PixelSpace(mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match="one value per channel"):
        PixelSpace(mean=(0.5, 0.5), std=(0.2,))


def test_per_sample_losses_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]
    losses = per_sample_losses(np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]]), np.array([1, 0]))
    np.testing.assert_allclose(losses, [-np.log(0.75), -np.log(0.25)], rtol=1e-12)


def test_pixel_gradient_central_differences_and_negative_control(rng):
    graph, params = small_net()
    space = PixelSpace(mean=(0.2, 0.4, 0.6), std=(0.3, 0.5, 0.25))
    pixels = rng.uniform(0, 1, (2, 3, 6, 6))
    labels = np.array([1, 3])
    _, gradient, _ = loss_and_pixel_gradient(graph, params, space, pixels, labels, np.float64)

    def total_loss() -> float:
        return float(loss_and_pixel_gradient(graph, params, space, pixels, labels, np.float64)[0].sum())

    numeric = numeric_gradient(total_loss, pixels, h=1e-6)
    assert relative_error(gradient, numeric) < 1e-6
    # negative control: the input gradient without the chain through the normalisation (1/std) must fail
    forgot_std = gradient * np.asarray(space.std).reshape(1, 3, 1, 1)
    assert relative_error(forgot_std, numeric) > 0.1


@pytest.mark.torch
def test_pixel_gradient_matches_pytorch_on_digits_classic(torch_or_skip, classic, held_out):
    torch = torch_or_skip
    F = torch.nn.functional
    pixels, labels = held_out[0][:16], held_out[1][:16]
    space = space_of(classic)
    losses, gradient, logits = loss_and_pixel_gradient(classic.graph, classic.params, space, pixels, labels)
    w = {k: torch.tensor(v) for k, v in classic.params.items()}
    p = torch.tensor(pixels, requires_grad=True)
    x = (p - space.mean[0]) / space.std[0]
    h = F.max_pool2d(F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w["conv2.weight"], w["conv2.bias"])), 2)
    theirs = F.linear(h.flatten(1), w["fc.weight"], w["fc.bias"])
    loss = F.cross_entropy(theirs, torch.tensor(labels), reduction="none")
    loss.sum().backward()
    np.testing.assert_allclose(logits, theirs.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(losses, loss.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert relative_error(gradient, p.grad.numpy()) < 1e-4, "pixel gradient: engine vs torch autograd"


# --- FGSM -----------------------------------------------------------------------------------------------------


def test_project_by_hand():
    pixels = np.array([0.0, 0.1, 0.5, 0.95, 1.0])
    steps = 0.2 * np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    # +0.2 from 0 fits; -0.2 from 0.1 stops at 0; +0.2 fits; +0.2 from 0.95 stops at 1; -0.2 from 1 fits
    np.testing.assert_allclose(project(steps, pixels, 0.2), [0.2, -0.1, 0.2, 0.05, -0.2], rtol=0, atol=1e-15)
    # a step longer than ε is cut back to the ball
    np.testing.assert_array_equal(project(np.array([0.7, -0.7]), np.array([0.5, 0.5]), 0.3), [0.3, -0.3])


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_sign_step_is_exact_and_clipped(classic, held_out, targeted):
    pixels, labels = held_out[0][:20], held_out[1][:20]
    if targeted:
        labels = (labels + 3) % 10
    space, epsilon = space_of(classic), 0.2
    _, gradient, _ = loss_and_pixel_gradient(classic.graph, classic.params, space, pixels, labels)
    attack = fgsm(classic.graph, classic.params, space, pixels, labels, epsilon, targeted=targeted)
    step = (-1.0 if targeted else 1.0) * epsilon * np.sign(gradient)
    p = pixels.astype(np.float64)
    inside = (p + step >= 0) & (p + step <= 1)
    assert inside.mean() > 0.2 and (~inside).mean() > 0.2, "both cases must be exercised"
    np.testing.assert_array_equal(attack.perturbation[inside], step[inside])  # exactly ±ε (or 0 where ∇ = 0)
    np.testing.assert_array_equal(attack.pixels[inside], p[inside] + step[inside])
    # where the step leaves [0, 1], the pixel stops at the edge it was heading for
    np.testing.assert_array_equal(attack.pixels[~inside], (step[~inside] > 0).astype(np.float64))
    assert np.abs(attack.perturbation).max() <= epsilon
    assert attack.pixels.min() >= 0 and attack.pixels.max() <= 1
    np.testing.assert_array_equal(attack.x, space.to_input(attack.pixels))
    np.testing.assert_array_equal(attack.logits, predict(classic.graph, classic.params, attack.x))


def test_fgsm_raises_the_loss_and_targeted_lowers_it(classic, held_out):
    pixels, labels = right_digits(classic, held_out, 50)
    space = space_of(classic)
    before = per_sample_losses(predict(classic.graph, classic.params, space.to_input(pixels)), labels)
    after = fgsm(classic.graph, classic.params, space, pixels, labels, 0.05).losses
    assert np.mean(after > before) > 0.95
    targets = (labels + 1) % 10
    target_before = per_sample_losses(predict(classic.graph, classic.params, space.to_input(pixels)), targets)
    target_after = fgsm(classic.graph, classic.params, space, pixels, targets, 0.05, targeted=True).losses
    assert np.mean(target_after < target_before) > 0.95


# --- the ε-ball, PGD ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.3])
@pytest.mark.parametrize("method", ["fgsm", "pgd", "pgd-random"])
def test_perturbation_stays_within_epsilon(classic, held_out, epsilon, method):
    pixels, labels = held_out[0][:20], held_out[1][:20]
    space = space_of(classic)
    if method == "fgsm":
        attack = fgsm(classic.graph, classic.params, space, pixels, labels, epsilon)
    else:
        attack = pgd(classic.graph, classic.params, space, pixels, labels, epsilon, steps=5,
                     random_start=method == "pgd-random", seed=3)
    assert np.abs(attack.perturbation).max() <= epsilon
    assert attack.pixels.min() >= 0 and attack.pixels.max() <= 1
    np.testing.assert_allclose(attack.pixels - pixels, attack.perturbation, rtol=0, atol=1e-15)
    assert np.abs(attack.perturbation).max() > 0.5 * epsilon  # it did move


def test_pgd_is_at_least_as_strong_as_fgsm(held_out):
    for model_id in ("digits_classic", "digits_resnet"):
        bundle = load_model(model_id)
        pixels, labels = right_digits(bundle, held_out, 100)
        space = space_of(bundle)
        one = fgsm(bundle.graph, bundle.params, space, pixels, labels, 0.1)
        many = pgd(bundle.graph, bundle.params, space, pixels, labels, 0.1, steps=10)
        fgsm_flips = np.mean(one.logits.argmax(axis=1) != labels)
        pgd_flips = np.mean(many.logits.argmax(axis=1) != labels)
        assert pgd_flips >= fgsm_flips, f"{model_id}: PGD flips {pgd_flips:.0%}, FGSM {fgsm_flips:.0%}"
        assert many.losses.mean() >= one.losses.mean()


def test_pgd_with_one_step_of_epsilon_is_fgsm(classic, held_out):
    pixels, labels = held_out[0][:20], held_out[1][:20]
    space = space_of(classic)
    one = fgsm(classic.graph, classic.params, space, pixels, labels, 0.1)
    same = pgd(classic.graph, classic.params, space, pixels, labels, 0.1, steps=1, alpha=0.1)
    np.testing.assert_array_equal(one.perturbation, same.perturbation)


def test_pgd_random_start_is_seeded(classic, held_out):
    pixels, labels = held_out[0][:8], held_out[1][:8]
    space = space_of(classic)

    def run(seed: int) -> np.ndarray:
        return pgd(classic.graph, classic.params, space, pixels, labels, 0.1, steps=2, random_start=True,
                   seed=seed).perturbation

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_pgd_reports_progress_per_step(classic, held_out):
    seen = []
    pgd(classic.graph, classic.params, space_of(classic), held_out[0][:2], held_out[1][:2], 0.1, steps=3,
        progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_targeted_attacks_reach_the_target_more_often_than_chance(classic, held_out):
    pixels, labels = right_digits(classic, held_out, 100)
    space = space_of(classic)
    targets = (labels + 1 + np.arange(100) % 9) % 10  # every other class, never the true one
    attack = pgd(classic.graph, classic.params, space, pixels, targets, 0.2, steps=20, targeted=True)
    reached = np.mean(attack.logits.argmax(axis=1) == targets)
    assert reached > 0.5, f"targeted PGD reached the target {reached:.0%} of the time (chance: 10%)"
    # control: a perturbation too small to matter reaches the target less often than chance
    tiny = pgd(classic.graph, classic.params, space, pixels, targets, 0.001, steps=2, targeted=True)
    assert np.mean(tiny.logits.argmax(axis=1) == targets) < 0.1


# --- the goal -----------------------------------------------------------------------------------------

#: FGSM at ε = 0.2 on the residual network flips 58% of the 100 digits (PyTorch agrees: scripts/bench_adversarial.py);
#: it needs ε = 0.25 to reach 80%, PGD flips all 100 at ε = 0.2
RESNET_SHORT = pytest.mark.xfail(strict=True, reason="measured: FGSM at ε = 0.2 flips 58% of digits_resnet's digits")


@pytest.mark.parametrize("model_id", [pytest.param(m, marks=RESNET_SHORT) if m == "digits_resnet" else m
                                      for m in DIGIT_MODELS])
def test_goal_fgsm_at_0_2_flips_80_percent_of_100_right_digits(model_id, held_out):
    bundle = load_model(model_id)
    pixels, labels = right_digits(bundle, held_out, 100)
    attack = fgsm(bundle.graph, bundle.params, space_of(bundle), pixels, labels, 0.2)
    flipped = np.mean(attack.logits.argmax(axis=1) != labels)
    assert flipped >= 0.8, f"{model_id}: FGSM at ε = 0.2 flipped {flipped:.0%} of 100 correctly classified digits"


# --- the curve ------------------------------------------------------------------------------------------------


def test_robustness_curve_matches_single_attacks(classic, held_out):
    pixels, labels = held_out[0][:60], held_out[1][:60]
    space = space_of(classic)
    curve = robustness_curve(classic.graph, classic.params, space, pixels, labels, [0.0, 0.1, 0.2],
                             batch_size=25)
    clean = predict(classic.graph, classic.params, space.to_input(pixels)).argmax(axis=1) == labels
    assert curve.n == 60 and curve.correct == int(clean.sum())
    assert curve.accuracy[0] == clean.mean() and curve.flip_rate[0] == 0
    for i, epsilon in enumerate([0.1, 0.2], start=1):
        right = fgsm(classic.graph, classic.params, space, pixels, labels, epsilon).logits.argmax(axis=1) == labels
        assert curve.accuracy[i] == right.mean()
        assert curve.flip_rate[i] == (clean & ~right).sum() / clean.sum()
    # batching does not change the answer
    whole = robustness_curve(classic.graph, classic.params, space, pixels, labels, [0.0, 0.1, 0.2], batch_size=60)
    np.testing.assert_array_equal(whole.accuracy, curve.accuracy)


def test_robustness_curve_with_pgd_counts_progress(classic, held_out):
    seen = []
    curve = robustness_curve(classic.graph, classic.params, space_of(classic), held_out[0][:20], held_out[1][:20],
                             [0.0, 0.2], method="pgd", steps=3, batch_size=10,
                             progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert curve.accuracy[1] < curve.accuracy[0]


# --- refusals -------------------------------------------------------------------------------------------------


def test_refusals(classic, held_out):
    pixels, labels = held_out[0][:2], held_out[1][:2]
    space = space_of(classic)
    with pytest.raises(ValueError, match=r"epsilon .* lies in \[0, 1\]"):
        fgsm(classic.graph, classic.params, space, pixels, labels, 1.5)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        pgd(classic.graph, classic.params, space, pixels, labels, 0.1, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        pgd(classic.graph, classic.params, space, pixels, labels, 0.1, alpha=0.0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        check_pixels(pixels * 3)
    with pytest.raises(ValueError, match="method must be one of"):
        robustness_curve(classic.graph, classic.params, space, pixels, labels, [0.1], method="cw")  # type: ignore
