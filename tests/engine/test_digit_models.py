"""The two shipped digit networks: their trained weights, their accuracy on held-out digits, their training,
and an independent PyTorch re-implementation of their specs (forward and one training step)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.datasets import load_mnist
from engine.datasets.mnist import load_raw
from engine.graph import Graph
from engine.models import digits
from engine.models.digits import classic_spec, lab_spec, load_classic, load_resnet, resnet_spec
from engine.training import SGD, Adam, TrainConfig, Trainer, evaluate, predict_logits


@pytest.fixture(scope="module")
def test_split():
    return load_mnist("test")


@pytest.fixture(scope="module")
def classic():
    return load_classic()


@pytest.fixture(scope="module")
def resnet():
    return load_resnet()


# --- the shipped weights --------------------------------------------------------------------------


def test_classic_reaches_97_percent_on_held_out_digits(classic, test_split):
    loss, accuracy = evaluate(classic.graph, classic.params, *test_split)
    assert accuracy >= 0.97, f"digits_classic: {accuracy:.2%} on the 2,000 test digits (loss {loss:.3f})"


def test_resnet_reaches_98_percent_on_held_out_digits(resnet, test_split):
    loss, accuracy = evaluate(resnet.graph, resnet.params, *test_split)
    assert accuracy >= 0.98, f"digits_resnet: {accuracy:.2%} on the 2,000 test digits (loss {loss:.3f})"


def test_untrained_networks_are_at_chance(test_split):
    """Control: the accuracy checks above measure the trained weights, not the data or the harness."""
    for spec in (classic_spec(), resnet_spec()):
        graph = Graph(spec)
        _, accuracy = evaluate(graph, graph.init_params(0), *test_split)
        assert accuracy < 0.3


def test_bundles_describe_the_models(classic, resnet):
    for bundle in (classic, resnet):
        assert bundle.labels == [str(d) for d in range(10)]
        assert bundle.graph.input_shape == (1, 28, 28)
        assert bundle.graph.by_id[bundle.graph.output_id].output_shape == (10,)
        p = bundle.preprocessing
        assert (p.resize, p.crop, p.grayscale, p.invert) == (28, 28, True, False)
        assert "CC BY-SA 3.0" in bundle.source
        cam = bundle.graph.by_id[bundle.cam_layer]
        assert len(cam.output_shape) == 3 and cam.output_shape[1] > 1
    assert classic.attention_node is None
    assert resnet.graph.by_id[resnet.attention_node].op.op == "spatial_softmax"
    assert resnet.cam_layer == "block2_out"
    ops = [n.op.op for n in resnet.graph.nodes]
    assert ops.count("add") == 2 and ops.count("batch_norm") == 6
    assert [n.op.op for n in classic.graph.nodes][:3] == ["conv2d", "relu", "max_pool2d"]


def test_preprocessing_turns_a_raw_digit_into_the_training_input(classic):
    images, _ = load_raw()
    x_test, _ = load_mnist("test")
    x = classic.preprocessing.normalize(images[8000])  # the first test digit, (28, 28) uint8
    np.testing.assert_allclose(x, x_test[:1], atol=1e-6)
    rgb = np.repeat(images[8000][:, :, None], 3, axis=2)  # the canvas sends RGB: white strokes on black
    np.testing.assert_allclose(classic.preprocessing.normalize(rgb), x_test[:1], atol=1e-5)


def test_attention_map_is_a_distribution_over_the_7x7_positions(resnet, test_split):
    x = test_split[0][:20]
    attention = resnet.graph.forward(x, resnet.params, keep_caches=False).activations["attention"]
    assert attention.shape == (20, 1, 7, 7)
    np.testing.assert_allclose(attention.sum(axis=(1, 2, 3)), 1, atol=1e-5)
    assert attention.min() >= 0
    # learned, not uniform: the largest weight is well above 1/49 on every digit
    assert (attention.reshape(20, -1).max(axis=1) > 2 / 49).all()


# --- training -------------------------------------------------------------------------------------


def test_short_training_of_the_classic_network_lowers_the_loss():
    train, test = load_mnist("train", limit=2000), load_mnist("test", limit=500)
    graph = Graph(classic_spec())
    loss0, _ = evaluate(graph, graph.init_params(0), *test)
    trainer = Trainer(graph, train, test, TrainConfig(epochs=3, batch_size=32, lr=0.03, seed=0))
    history = [e for e in trainer.run() if e.kind == "epoch"]
    assert history[-1].step == 189  # a few hundred real steps
    assert history[-1].test_loss < 0.5 * loss0 and history[-1].loss < history[0].loss
    assert history[-1].test_accuracy > 0.9


def test_training_the_resnet_is_reproducible():
    train = load_mnist("train", limit=160)
    config = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, augment_shift=2, seed=3)
    a = Trainer(Graph(resnet_spec()), train, config=config).fit()
    b = Trainer(Graph(resnet_spec()), train, config=config).fit()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    fresh = Graph(resnet_spec()).init_params(3)
    assert not np.array_equal(a["block1a_bn.running_mean"], fresh["block1a_bn.running_mean"])  # it did train


def test_recipes_are_the_documented_ones():
    assert digits.RECIPES[digits.CLASSIC_ID].optimizer == "sgd"
    assert set(digits.RECIPES) == set(digits.SPECS) == {"digits_classic", "digits_resnet"}


# --- the training lab's variants ------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("dropout", [True, False])
def test_lab_variants_have_what_their_switches_say(batch_norm, skip, dropout):
    graph = Graph(lab_spec(batch_norm=batch_norm, dropout=dropout, skip=skip, depth=4, width=4))
    ops = [n.op.op for n in graph.nodes]
    assert ops.count("conv2d") == 2 * 4 + 2
    assert ops.count("batch_norm") == (10 if batch_norm else 0)
    assert ops.count("add") == (4 if skip else 0)
    assert ops.count("dropout") == (1 if dropout else 0)
    assert graph.by_id[graph.output_id].output_shape == (10,)
    conv_biases = [k for k in graph.param_shapes() if k.endswith("_conv.bias")]
    assert len(conv_biases) == (0 if batch_norm else 10)  # batch norm's shift replaces the bias


def test_lab_depth_and_width():
    assert [n.op.op for n in Graph(lab_spec(depth=8)).nodes].count("conv2d") == 18
    wide = Graph(lab_spec(depth=2, width=16))
    assert wide.by_id["block2_out"].output_shape == (32, 7, 7)
    with pytest.raises(ValueError, match="depth"):
        lab_spec(depth=0)
    with pytest.raises(ValueError, match="width"):
        lab_spec(width=100)


def test_a_lab_network_learns_in_a_few_steps():
    train = load_mnist("train", limit=640)
    graph = Graph(lab_spec(batch_norm=True, dropout=True, skip=True, depth=2, width=4))
    trainer = Trainer(graph, train, config=TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=3e-3))
    epochs = [e for e in trainer.run() if e.kind == "epoch"]
    assert epochs[-1].loss < 0.7 * epochs[0].loss


# --- an independent reference: the same specs in PyTorch -------------------------------------------


def _torch_forward(torch, graph: Graph, params: dict, x, training: bool):
    """Run a digit-network spec with torch.nn.functional (only the ops the digit networks use)."""
    F = torch.nn.functional
    acts = {"input": x}
    for node in graph.nodes:
        a = node.op.attrs
        ins = [acts[i] for i in node.inputs]
        p = {name: params[f"{node.id}.{name}"] for name in node.op.param_shapes()}
        if node.op.op == "conv2d":
            out = F.conv2d(ins[0], p["weight"], p.get("bias"), stride=a["stride"], padding=a["padding"])
        elif node.op.op == "batch_norm":
            out = F.batch_norm(ins[0], p["running_mean"], p["running_var"], p["weight"], p["bias"],
                               training=training, momentum=a["momentum"], eps=a["eps"])
        elif node.op.op == "relu":
            out = F.relu(ins[0])
        elif node.op.op == "max_pool2d":
            out = F.max_pool2d(ins[0], a["kernel_size"], a["stride"])
        elif node.op.op == "add":
            out = ins[0] + ins[1]
        elif node.op.op == "flatten":
            out = ins[0].flatten(1)
        elif node.op.op == "linear":
            out = F.linear(ins[0], p["weight"], p["bias"])
        elif node.op.op == "spatial_softmax":
            out = torch.softmax(ins[0].flatten(2), dim=2).reshape(ins[0].shape)
        elif node.op.op == "attention_pool":
            out = (ins[0] * ins[1]).sum(dim=(2, 3))
        else:
            raise AssertionError(f"no PyTorch reference for op {node.op.op}")
        acts[node.id] = out
    return acts[graph.output_id]


@pytest.mark.torch
@pytest.mark.parametrize("which", ["classic", "resnet"])
def test_shipped_models_match_pytorch(torch_or_skip, which, classic, resnet, test_split):
    torch = torch_or_skip
    bundle = classic if which == "classic" else resnet
    x = test_split[0][:64]
    mine = predict_logits(bundle.graph, bundle.params, x)
    with torch.no_grad():
        theirs = _torch_forward(torch, bundle.graph, {k: torch.tensor(v) for k, v in bundle.params.items()},
                                torch.tensor(x), training=False).numpy()
    err = np.abs(mine - theirs).max()
    assert err < 1e-4, f"{which}: engine vs PyTorch logits differ by {err:.2e}"


@pytest.mark.torch
@pytest.mark.parametrize("which", ["classic", "resnet"])
def test_one_training_step_matches_pytorch(torch_or_skip, which):
    """Forward in training mode, cross-entropy, backward and one optimiser step, engine vs PyTorch."""
    torch = torch_or_skip
    graph = Graph(classic_spec() if which == "classic" else resnet_spec())
    x, y = load_mnist("train", limit=32)
    start = graph.init_params(5)
    optimizer_kw = {"lr": 0.05, "momentum": 0.9} if which == "classic" else {"lr": 1e-2}
    config = TrainConfig(optimizer="sgd" if which == "classic" else "adam", weight_decay=1e-3, **optimizer_kw)
    trainer = Trainer(graph, (x, y), config=config, params=start)
    for _ in range(2):  # two steps, so momentum / Adam's moments take part
        trainer.train_step(x, y)

    tensors = {k: torch.tensor(v, requires_grad=k in graph.trainable_names()) for k, v in start.items()}
    decayed = set(trainer.decay_names)
    groups = [{"params": [t for k, t in tensors.items() if k in decayed]},
              {"params": [t for k, t in tensors.items() if t.requires_grad and k not in decayed], "weight_decay": 0}]
    torch_opt = (torch.optim.SGD(groups, weight_decay=1e-3, **optimizer_kw) if which == "classic"
                 else torch.optim.Adam(groups, weight_decay=1e-3, **optimizer_kw))
    for _ in range(2):
        torch_opt.zero_grad()
        logits = _torch_forward(torch, graph, tensors, torch.tensor(x), training=True)
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        torch_opt.step()
    # SGD agrees to float32 rounding. Adam divides by sqrt(v), which scales rounding noise in near-zero
    # gradients up towards a whole step, so it is held to 1% of one step (lr) instead.
    tolerance = 1e-6 if which == "classic" else 0.01 * optimizer_kw["lr"]
    for k, t in tensors.items():
        err = np.abs(trainer.params[k] - t.detach().numpy()).max()
        assert err < tolerance, f"{which} {k}: engine vs PyTorch after 2 steps differ by {err:.2e}"
    assert isinstance(trainer.optimizer, SGD if which == "classic" else Adam)
