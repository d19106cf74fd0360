"""Training code: optimisers against torch.optim, weight decay, augmentation, and the training loop."""

from __future__ import annotations

import numpy as np
import pytest

from engine.training import SGD, Adam, TrainConfig, random_shift

SHAPES = {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,), "bn.weight": (4,), "fc.weight": (3, 8)}


def _params_and_grads(rng, steps):
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def _torch_steps(torch, make_optimizer, params, grads_per_step, decayed):
    """Run torch.optim on copies of ``params`` with the given gradients; ``decayed`` names take weight decay."""
    tensors = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in params.items()}
    groups = [{"params": [t for k, t in tensors.items() if k in decayed]},
              {"params": [t for k, t in tensors.items() if k not in decayed], "weight_decay": 0.0}]
    optimizer = make_optimizer(groups)
    for grads in grads_per_step:
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        optimizer.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


def _engine_steps(optimizer, params, grads_per_step):
    params = {k: v.copy() for k, v in params.items()}
    for grads in grads_per_step:
        optimizer.step(params, grads)
    return params


def _assert_same(mine, theirs, atol):
    for k in theirs:
        err = np.abs(mine[k] - theirs[k]).max()
        assert err <= atol, f"{k}: engine vs torch.optim differ by {err:.3g} (mine {mine[k].ravel()[:3]}, " \
                            f"theirs {theirs[k].ravel()[:3]})"


DECAYED = {"conv.weight", "fc.weight"}


@pytest.mark.torch
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize(("momentum", "nesterov", "weight_decay"),
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, False, 5e-2), (0.8, True, 1e-2)])
def test_sgd_matches_torch(torch_or_skip, rng, steps, momentum, nesterov, weight_decay):
    torch = torch_or_skip
    params, grads = _params_and_grads(rng, steps)
    theirs = _torch_steps(torch, lambda g: torch.optim.SGD(g, lr=0.1, momentum=momentum, nesterov=nesterov,
                                                           weight_decay=weight_decay), params, grads, DECAYED)
    mine = _engine_steps(SGD(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                             decay_names=DECAYED), params, grads)
    _assert_same(mine, theirs, atol=1e-6)
    # and the check can fail: without weight decay the decayed weights come out different
    if weight_decay:
        plain = _engine_steps(SGD(lr=0.1, momentum=momentum, nesterov=nesterov), params, grads)
        assert np.abs(plain["conv.weight"] - theirs["conv.weight"]).max() > 1e-4


@pytest.mark.torch
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize(("betas", "weight_decay"), [((0.9, 0.999), 0.0), ((0.8, 0.99), 1e-2)])
def test_adam_matches_torch(torch_or_skip, rng, steps, betas, weight_decay):
    torch = torch_or_skip
    params, grads = _params_and_grads(rng, steps)
    theirs = _torch_steps(torch, lambda g: torch.optim.Adam(g, lr=1e-2, betas=betas, eps=1e-8,
                                                            weight_decay=weight_decay), params, grads, DECAYED)
    mine = _engine_steps(Adam(lr=1e-2, betas=betas, eps=1e-8, weight_decay=weight_decay, decay_names=DECAYED),
                         params, grads)
    _assert_same(mine, theirs, atol=1e-6)


def test_sgd_first_steps_by_hand():
    """p=1, g=1, lr=0.1, momentum 0.9: b1 = 1 -> p = 0.9; b2 = 0.9 + 1 = 1.9 -> p = 0.71."""
    params = {"w": np.array([1.0])}
    sgd = SGD(lr=0.1, momentum=0.9)
    sgd.step(params, {"w": np.array([1.0])})
    assert params["w"][0] == pytest.approx(0.9)
    sgd.step(params, {"w": np.array([1.0])})
    assert params["w"][0] == pytest.approx(0.71)


def test_adam_first_step_moves_each_parameter_by_lr():
    """After bias correction Adam's first step is lr * g / (|g| + eps): lr in the direction of -sign(g)."""
    params = {"w": np.array([0.5, -2.0, 3.0])}
    Adam(lr=0.01).step(params, {"w": np.array([1e-3, -50.0, 2.0])})
    np.testing.assert_allclose(params["w"], [0.49, -1.99, 2.99], rtol=0, atol=1e-7)


def test_weight_decay_only_on_named_parameters():
    params = {"a.weight": np.ones((2, 2)), "a.bias": np.ones(2)}
    SGD(lr=0.5, momentum=0.0, weight_decay=0.1, decay_names={"a.weight"}).step(
        params, {"a.weight": np.zeros((2, 2)), "a.bias": np.zeros(2)})
    np.testing.assert_allclose(params["a.weight"], 0.95)
    np.testing.assert_allclose(params["a.bias"], 1.0)


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="learning rate"):
        SGD(lr=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD(lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]


def test_random_shift_moves_whole_images_and_fills_with_background(rng):
    x = np.zeros((50, 1, 6, 6), dtype=np.float32)
    x[:, 0, 2:4, 2:4] = 1.0
    shifted = random_shift(x, 2, rng)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert (shifted.sum(axis=(1, 2, 3)) == 4).all()  # a 2x2 blob moved by <= 2 stays inside the 6x6 image
    moves = {tuple(np.argwhere(s[0])[0] - 2) for s in shifted}
    assert len(moves) > 10 and all(abs(dy) <= 2 and abs(dx) <= 2 for dy, dx in moves)
    assert random_shift(x, 0, rng) is x
