"""Training code: optimisers against torch.optim, weight decay, augmentation, and the training loop."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from engine.datasets import load_mnist
from engine.gradcheck import numeric_gradient, relative_error
from engine.graph import Graph
from engine.layers.loss import softmax_cross_entropy
from engine.training import (
    SGD,
    Adam,
    TrainConfig,
    Trainer,
    default_decay_names,
    evaluate,
    logits_node,
    random_shift,
    train,
)

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


# --- the training loop, on a small MLP over real digits ------------------------------------------


def _mlp_spec(batch_norm=True, dropout=True, softmax=False):
    nodes = [{"id": "flatten", "op": "flatten"}, {"id": "fc1", "op": "linear", "out_features": 32}]
    if batch_norm:
        nodes.append({"id": "bn", "op": "batch_norm"})
    nodes.append({"id": "relu", "op": "relu"})
    if dropout:
        nodes.append({"id": "drop", "op": "dropout", "p": 0.2})
    nodes.append({"id": "fc2", "op": "linear", "out_features": 10})
    if softmax:
        nodes.append({"id": "probs", "op": "softmax", "dim": 1})
    return {"input_shape": [1, 28, 28], "nodes": nodes}


@pytest.fixture(scope="module")
def digits():
    return load_mnist("train", limit=1200), load_mnist("test", limit=500)


def test_short_training_run_lowers_the_loss_and_learns(digits):
    (x, y), test = digits
    graph = Graph(_mlp_spec())
    params0 = graph.init_params(0)
    loss0, acc0 = evaluate(graph, params0, *test)
    params, history = train(graph, (x, y), test, TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=0), params0)
    assert [e.epoch for e in history] == [1, 2, 3]
    assert history[-1].loss < history[0].loss  # training loss falls epoch by epoch
    assert history[-1].test_loss < 0.5 * loss0, f"test loss {loss0:.3f} -> {history[-1].test_loss:.3f}"
    assert acc0 < 0.3 and history[-1].test_accuracy > 0.8
    assert evaluate(graph, params, *test) == (history[-1].test_loss, history[-1].test_accuracy)
    # training mode updated batch norm's running statistics, which evaluation then uses
    assert not np.allclose(params["bn.running_mean"], params0["bn.running_mean"])


def test_same_seed_gives_identical_weights_and_another_seed_does_not(digits):
    (x, y), _ = digits
    graph = Graph(_mlp_spec())
    config = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=1e-3, augment_shift=1,
                         seed=7)
    a, _ = train(graph, (x[:300], y[:300]), config=config)
    b, _ = train(graph, (x[:300], y[:300]), config=config)
    c, _ = train(graph, (x[:300], y[:300]), config=TrainConfig(**{**config.__dict__, "seed": 8}))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])


def test_train_step_is_one_sgd_step_on_the_numeric_gradient_of_the_loss(rng):
    """The trainer's wiring (logits of a softmax-ended graph, loss, backward, update) against central differences."""
    graph = Graph({"input_shape": [6], "nodes": [
        {"id": "fc1", "op": "linear", "out_features": 5}, {"id": "bn", "op": "batch_norm"},
        {"id": "tanh", "op": "tanh"}, {"id": "fc2", "op": "linear", "out_features": 3},
        {"id": "probs", "op": "softmax", "dim": 1}]})
    assert logits_node(graph) == "fc2"
    x = rng.standard_normal((8, 6))
    y = rng.integers(0, 3, size=8)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(3).items()}
    trainer = Trainer(graph, (x, y), config=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, seed=0),
                      params=params)
    trainer.params = {k: v.astype(np.float64) for k, v in params.items()}  # stay in float64 for the check

    def loss() -> float:
        scratch = {k: v.copy() for k, v in work.items()}  # running stats must not drift between evaluations
        logits = graph.forward(x, scratch, training=True).activations["fc2"]
        return softmax_cross_entropy(logits, y)[0]

    work = {k: v.copy() for k, v in trainer.params.items()}
    numeric = {k: numeric_gradient(loss, work[k]) for k in graph.trainable_names()}
    before = {k: v.copy() for k, v in trainer.params.items()}
    trainer.train_step(x, y)
    for k in graph.trainable_names():
        step = (before[k] - trainer.params[k]) / 0.1
        assert relative_error(step, numeric[k]) < 1e-6, k
    # negative control: a wrong gradient is caught by the same check
    assert relative_error(1.1 * numeric["fc1.weight"], numeric["fc1.weight"]) > 1e-3


def test_progress_events_stream_per_batch_and_epoch(digits):
    (x, y), test = digits
    trainer = Trainer(Graph(_mlp_spec()), (x[:100], y[:100]), (test[0][:50], test[1][:50]),
                      TrainConfig(epochs=2, batch_size=32, progress_every=2))
    events = list(trainer.run())
    kinds = [e.kind for e in events]
    # 4 batches per epoch (32+32+32+4): events after batches 2 and 4, then the epoch, twice; then done
    assert kinds == ["batch", "batch", "epoch"] * 2 + ["done"]
    assert [e.step for e in events] == [2, 4, 4, 6, 8, 8, 8]
    assert all(e.batches == 4 and e.epochs == 2 for e in events)
    assert events[2].test_accuracy is not None and events[0].test_accuracy is None
    assert events[-1].eta == 0 and all(e.eta is not None and e.eta >= 0 for e in events)
    assert all(b.elapsed >= a.elapsed for a, b in itertools.pairwise(events))
    assert set(events[0].as_dict()) >= {"epoch", "batch", "loss", "accuracy", "elapsed", "eta"}
    assert trainer.history == [events[2], events[5]]


def test_cancel_stops_before_the_next_batch(digits):
    (x, y), _ = digits
    trainer = Trainer(Graph(_mlp_spec()), (x, y), config=TrainConfig(epochs=5, batch_size=16))
    seen = []
    for event in trainer.run():
        seen.append(event)
        if event.step == 3:
            threading.Thread(target=trainer.cancel).start()  # as a web request would, from another thread
            threading.Event().wait(0.05)
    assert seen[-1].kind == "cancelled" and seen[-1].step == 3 and trainer.cancelled
    assert len(seen) == 4


def test_fine_tuning_starts_from_given_params_and_leaves_them_untouched(digits):
    (x, y), test = digits
    graph = Graph(_mlp_spec(dropout=False))
    pretrained, _ = train(graph, (x, y), config=TrainConfig(epochs=2, batch_size=16, lr=0.05))
    snapshot = {k: v.copy() for k, v in pretrained.items()}
    loss_pre, _ = evaluate(graph, pretrained, *test)
    loss_fresh, _ = evaluate(graph, graph.init_params(0), *test)
    tuned = Trainer(graph, (x[:64], y[:64]), config=TrainConfig(epochs=1, batch_size=16, lr=0.01), params=pretrained)
    first = next(tuned.run())
    assert first.loss < 0.5 * loss_fresh  # already good on its first batches: it did start from the pretrained weights
    for k in snapshot:
        np.testing.assert_array_equal(pretrained[k], snapshot[k], err_msg=k)
    assert loss_pre < loss_fresh


def test_weight_decay_skips_biases_and_batch_norm():
    graph = Graph(_mlp_spec())
    assert default_decay_names(graph) == ["fc1.weight", "fc2.weight"]


def test_bad_training_data_is_refused():
    graph = Graph(_mlp_spec())
    with pytest.raises(ValueError, match="as many labels"):
        Trainer(graph, (np.zeros((4, 1, 28, 28), np.float32), np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="takes"):
        Trainer(graph, (np.zeros((4, 3, 28, 28), np.float32), np.zeros(4, np.int64)))
