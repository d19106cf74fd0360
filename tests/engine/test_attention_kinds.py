"""Attention for sequence inputs (C, L) (a Conv1d network, audio-style) and volume inputs (C, D, H, W) (a Conv3d
network, video-style): maps have the input's spatial shape, CAMs upsampled linearly or trilinearly.

References: PyTorch (Grad-CAM from hooks, F.interpolate), central differences (the input gradients), and the
tested 2D path itself: a sequence network is an image network of height 1 and a volume network of depth 1 with
(1, k, k) kernels is an image network, so every method must give the same numbers both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph
from engine.attention import METHODS, AttributionError, explain
from engine.attention.budget import estimated_macs, graph_macs, plan
from engine.attention.common import class_scores, input_gradients, score_node
from engine.attention.resize import resize_linear
from engine.gradcheck import check_function

SEQUENCE = {"input_shape": [2, 32], "nodes": [
    {"id": "conv1", "op": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2},
    {"id": "relu1", "op": "relu"},
    {"id": "pool1", "op": "max_pool1d", "kernel_size": 2},
    {"id": "conv2", "op": "conv1d", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}

VOLUME = {"input_shape": [2, 6, 8, 8], "nodes": [
    {"id": "conv1", "op": "conv3d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"id": "relu1", "op": "relu"},
    {"id": "pool1", "op": "max_pool3d", "kernel_size": 2},
    {"id": "conv2", "op": "conv3d", "out_channels": 5, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}

#: every method but learned attention (no attention layer here), with options that keep it quick
OPTIONS = {"smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 8}, "occlusion": {"window": 2, "stride": 1}}
RUNNABLE = [m for m in METHODS if m != "learned_attention"]


def setup(spec: dict, seed: int) -> tuple[Graph, dict, np.ndarray]:
    graph = Graph(spec)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=seed).items()}
    x = np.random.default_rng(100 + seed).standard_normal((1, *spec["input_shape"]))
    return graph, params, x


def sequence_as_image(spec: dict) -> dict:
    """A sequence network as an image network on inputs of height 1: kernels (1, k), padding (0, p)."""
    nodes = []
    for node in spec["nodes"]:
        node = dict(node)
        if node["op"] in {"conv1d", "max_pool1d"}:
            node["op"] = node["op"].replace("1d", "2d")
            node["kernel_size"] = [1, node["kernel_size"]]
            if "padding" in node:
                node["padding"] = [0, node["padding"]]
        nodes.append(node)
    return {"input_shape": [spec["input_shape"][0], 1, *spec["input_shape"][1:]], "nodes": nodes}


def volume_of_depth_one(image_spec: dict) -> dict:
    """An image network as a volume network on clips of one frame: kernels (1, k, k), padding (0, p, p)."""
    nodes = []
    for node in image_spec["nodes"]:
        node = dict(node)
        if node["op"] in {"conv2d", "max_pool2d"}:
            node["op"] = node["op"].replace("2d", "3d")
            node["kernel_size"] = [1, node["kernel_size"], node["kernel_size"]]
            if "padding" in node:
                node["padding"] = [0, node["padding"], node["padding"]]
        nodes.append(node)
    channels, height, width = image_spec["input_shape"]
    return {"input_shape": [channels, 1, height, width], "nodes": nodes}


IMAGE = {"input_shape": [2, 8, 8], "nodes": [
    {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"id": "relu1", "op": "relu"},
    {"id": "pool1", "op": "max_pool2d", "kernel_size": 2},
    {"id": "conv2", "op": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 3},
]}


@pytest.mark.parametrize("method", RUNNABLE)
def test_a_sequence_network_explains_as_the_same_network_of_height_one(method):
    graph, params, x = setup(SEQUENCE, seed=3)
    image = Graph(sequence_as_image(SEQUENCE))
    image_params = {k: v.reshape(v.shape[0], v.shape[1], 1, -1) if v.ndim == 3 else v for k, v in params.items()}
    mine = explain(graph, params, x, method, target=1, **OPTIONS.get(method, {}))
    theirs = explain(image, image_params, x[:, :, None, :], method, target=1, **OPTIONS.get(method, {}))
    assert mine.input_map.shape == (32,) and mine.layer_map.ndim == 1
    assert np.abs(mine.layer_map).max() > 0, "an all-zero map proves nothing"
    for name in ("layer_map", "input_map", "input_map_normalized"):
        np.testing.assert_allclose(getattr(mine, name), getattr(theirs, name)[0], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{method} {name}: sequence (mine) vs height-1 image (reference)")
    assert mine.score == pytest.approx(theirs.score) if mine.score is not None else theirs.score is None


@pytest.mark.parametrize("method", RUNNABLE)
def test_a_volume_of_one_frame_explains_as_the_image_network(method):
    image, params, x = setup(IMAGE, seed=6)
    volume = Graph(volume_of_depth_one(IMAGE))
    volume_params = {k: v[:, :, None] if v.ndim == 4 else v for k, v in params.items()}
    options = OPTIONS.get(method, {})
    mine = explain(volume, volume_params, x[:, :, None], method, target=2, **options)
    theirs = explain(image, params, x, method, target=2, **options)
    assert mine.input_map.shape == (1, 8, 8)
    assert np.abs(mine.layer_map).max() > 0, "an all-zero map proves nothing"
    for name in ("layer_map", "input_map", "input_map_normalized"):
        np.testing.assert_allclose(getattr(mine, name)[0], getattr(theirs, name), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{method} {name}: one-frame volume (mine) vs image (reference)")


@pytest.mark.parametrize("method", RUNNABLE)
def test_every_method_gives_a_volume_map_of_the_clip_shape(method):
    graph, params, x = setup(VOLUME, seed=1)
    result = explain(graph, params, x, method, **OPTIONS.get(method, {}))
    assert result.input_map.shape == (6, 8, 8)
    lo = -1 if result.signed else 0
    assert lo <= result.input_map_normalized.min() and result.input_map_normalized.max() <= 1
    assert np.all(np.isfinite(result.layer_map))
    if METHODS[method].uses_layer and method != "effective_rf":
        assert result.layer == "act" and result.layer_map.shape == (3, 4, 4)


# --- PyTorch: Grad-CAM from hooks, and the interpolation -----------------------------------------------------
def torch_grad_cam(torch, spec: dict, params: dict, x: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM written from scratch in PyTorch for SEQUENCE or VOLUME: autograd's gradient at the last ReLU,
    averaged over positions, weighting the activations; the raw map and its upsampling to the input."""
    nn, functional = torch.nn, torch.nn.functional
    dims = len(spec["input_shape"]) - 1
    conv, pool = {1: (nn.Conv1d, nn.MaxPool1d), 3: (nn.Conv3d, nn.MaxPool3d)}[dims]
    channels = spec["input_shape"][0]
    c1, c2 = spec["nodes"][0], spec["nodes"][3]
    conv1 = conv(channels, c1["out_channels"], c1["kernel_size"], padding=c1["padding"]).double()
    conv2 = conv(c1["out_channels"], c2["out_channels"], c2["kernel_size"], padding=c2["padding"]).double()
    fc = nn.Linear(c2["out_channels"], 3).double()
    with torch.no_grad():
        for module, name in ((conv1, "conv1"), (conv2, "conv2"), (fc, "fc")):
            module.weight.copy_(torch.from_numpy(params[f"{name}.weight"]))
            module.bias.copy_(torch.from_numpy(params[f"{name}.bias"]))
    act = torch.relu(conv2(pool(2)(torch.relu(conv1(torch.from_numpy(x))))))
    act.retain_grad()
    logits = fc(act.mean(dim=tuple(range(2, 2 + dims))))
    logits[0, target].backward()
    alpha = act.grad[0].mean(dim=tuple(range(1, 1 + dims)))
    raw = torch.einsum("k...,k->...", act[0].detach(), alpha)
    mode = {1: "linear", 3: "trilinear"}[dims]
    upsampled = functional.interpolate(raw[None, None], size=tuple(spec["input_shape"][1:]), mode=mode,
                                       align_corners=False)[0, 0]
    return raw.numpy(), upsampled.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("spec", [SEQUENCE, VOLUME], ids=["conv1d", "conv3d"])
def test_grad_cam_matches_pytorch(torch_or_skip, spec):
    for seed in range(4):
        graph, params, x = setup(spec, seed)
        for target in range(3):
            mine = explain(graph, params, x, "gradcam", target=target)
            raw, upsampled = torch_grad_cam(torch_or_skip, spec, params, x, target)
            assert np.abs(raw).max() > 1e-6, "a zero map proves nothing"
            np.testing.assert_allclose(mine.layer_map, raw, rtol=1e-5, atol=1e-7,
                                       err_msg=f"seed {seed} class {target}: layer map, mine vs torch")
            np.testing.assert_allclose(mine.input_map, upsampled, rtol=1e-5, atol=1e-7,
                                       err_msg=f"seed {seed} class {target}: upsampled map, mine vs torch")


@pytest.mark.torch
@pytest.mark.parametrize("mode, shape, size", [
    ("linear", (3, 5), (17,)), ("linear", (2, 9), (4,)), ("bilinear", (3, 7, 5), (22, 16)),
    ("trilinear", (2, 3, 4, 5), (7, 16, 9)), ("trilinear", (1, 6, 4, 4), (2, 4, 11)),
])
def test_linear_resizing_matches_pytorch(torch_or_skip, mode, shape, size):
    maps = np.random.default_rng(len(shape) + size[0]).standard_normal(shape)
    ours = resize_linear(maps, size)
    theirs = torch_or_skip.nn.functional.interpolate(torch_or_skip.from_numpy(maps)[None], size=size, mode=mode,
                                                     align_corners=False)[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=f"{mode} {shape} -> {size}: mine vs torch")


def test_linear_resizing_by_hand():
    # 2 -> 4 with half-pixel centres: output i samples (i + .5)/2 - .5 = -.25, .25, .75, 1.25 -> clamp
    np.testing.assert_allclose(resize_linear(np.array([0.0, 4.0]), (4,)), [0.0, 1.0, 3.0, 4.0])
    # trilinear is linear along each axis: a ramp along depth stays a ramp, constant across rows and columns
    ramp = np.array([0.0, 4.0]).reshape(2, 1, 1) * np.ones((2, 3, 3))
    np.testing.assert_allclose(resize_linear(ramp, (4, 3, 3))[:, 1, 2], [0.0, 1.0, 3.0, 4.0])


# --- input gradients against central differences ---------------------------------------------------------------
def gradient_errors(spec: dict, seed: int, wrong: bool = False) -> float:
    """Relative error of d S_target / d x (what every gradient method starts from) against central differences;
    ``wrong`` checks a deliberately wrong gradient (one position's value doubled) instead."""
    graph, params, x = setup(spec, seed)
    node = score_node(graph)

    def score(x_: np.ndarray) -> np.ndarray:
        return class_scores(graph.forward(x_, params, keep_caches=False, stop_at=node, keep=()).output)[0, 1]

    def analytic(dout: np.ndarray) -> tuple[np.ndarray]:
        grads, _ = input_gradients(graph, params, x, 1)
        if wrong:
            grads[(0, 0) + (grads.ndim - 2) * (1,)] *= 2
        return (dout * grads,)

    return check_function(score, analytic, [x])[0]


#: a smaller clip for the central differences (two passes per input value)
SMALL_VOLUME = dict(VOLUME, input_shape=[1, 4, 6, 6])


@pytest.mark.parametrize("spec", [SEQUENCE, SMALL_VOLUME], ids=["conv1d", "conv3d"])
def test_input_gradients_match_central_differences(spec):
    for seed in range(2):
        assert gradient_errors(spec, seed) < 1e-6, f"seed {seed}"


@pytest.mark.parametrize("spec", [SEQUENCE, SMALL_VOLUME], ids=["conv1d", "conv3d"])
def test_the_gradient_check_rejects_a_wrong_gradient(spec):
    assert gradient_errors(spec, 0, wrong=True) > 1e-3  # negative control: the check can fail


def test_saliency_and_gradient_x_input_are_the_gradient_per_position():
    graph, params, x = setup(VOLUME, seed=2)
    grads, _ = input_gradients(graph, params, x, 0)
    saliency = explain(graph, params, x, "saliency", target=0)
    # maps are float32 (AttributionMap): agreement to float32 precision
    np.testing.assert_allclose(saliency.layer_map, np.abs(grads[0]).max(axis=0), rtol=1e-6)
    times_input = explain(graph, params, x, "gradient_x_input", target=0)
    np.testing.assert_allclose(times_input.layer_map, (x[0] * grads[0]).sum(axis=0), rtol=1e-6, atol=1e-12)
    assert times_input.signed and times_input.input_map_normalized.min() < 0


def test_gradient_x_input_of_a_linear_network_adds_up_to_the_score():
    # conv1d without bias -> global average pooling -> linear without bias: S is linear in x, so sum(x * dS/dx) = S
    spec = {"input_shape": [2, 16], "nodes": [
        {"id": "conv", "op": "conv1d", "out_channels": 3, "kernel_size": 3, "bias": False},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 2, "bias": False}]}
    graph, params, x = setup(spec, seed=0)
    result = explain(graph, params, x, "gradient_x_input", target=1)
    assert float(result.layer_map.astype(np.float64).sum()) == pytest.approx(result.score, rel=1e-6)
    ig = explain(graph, params, x, "integrated_gradients", target=1, steps=4)
    np.testing.assert_allclose(ig.layer_map, result.layer_map, rtol=1e-6)


def test_integrated_gradients_stays_complete_on_a_volume():
    graph, params, x = setup(VOLUME, seed=4)
    result = explain(graph, params, x, "integrated_gradients", target=0, steps=64)
    assert result.extras["completeness_error"] < 0.02


# --- occlusion: windows along every axis, counted as the budget counts them -----------------------------------
def test_occlusion_of_a_sequence_by_hand():
    # S = mean of x over 8 positions (one channel, a 1-wide conv with weight 1, pooled, linear weight 1):
    # covering a window of 2 drops S by (x_i + x_{i+1}) / 8; each position averages the windows covering it
    spec = {"input_shape": [1, 8], "nodes": [
        {"id": "conv", "op": "conv1d", "out_channels": 1, "kernel_size": 1, "bias": False},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 1, "bias": False}]}
    params = {"conv.weight": np.ones((1, 1, 1)), "fc.weight": np.ones((1, 1))}
    x = np.arange(8.0).reshape(1, 1, 8)
    result = explain(Graph(spec), params, x, "occlusion", window=2, stride=2)
    # windows [0, 1], [2, 3], [4, 5], [6, 7]: drops 1/8, 5/8, 9/8, 13/8
    np.testing.assert_allclose(result.layer_map, np.repeat([1, 5, 9, 13], 2) / 8)
    assert result.extras["windows"] == 4


def test_occlusion_windows_are_cubes_clipped_to_short_axes_and_the_budget_counts_them():
    graph, params, x = setup(VOLUME, seed=0)  # clip 6 x 8 x 8
    options = plan(graph, "occlusion", {"window": 7, "stride": 3}, None)
    # depth 6 < 7: one window over all frames; rows and columns: starts 0 and 1 -> 1 x 2 x 2 = 4 copies
    result = explain(graph, params, x, "occlusion", target=0, **options)
    assert result.extras["windows"] == 4
    assert estimated_macs(graph, "occlusion", options) == 5 * graph_macs(graph)
    with pytest.raises(AttributionError, match="stride of 1 up to the window"):
        explain(graph, params, x, "occlusion", window=2, stride=3)


def test_a_volume_layer_must_keep_three_spatial_axes():
    graph, params, x = setup(VOLUME, seed=0)
    with pytest.raises(AttributionError, match=r"input's 3D spatial extent \(C, D, H, W\)"):
        explain(graph, params, x, "gradcam", layer="gap")
    result = explain(graph, params, x, "gradcam", layer="relu1")  # an earlier layer, full resolution
    assert result.layer_map.shape == (6, 8, 8)


def test_effective_receptive_field_of_a_sequence_unit_is_its_window():
    spec = {"input_shape": [1, 15], "nodes": [
        {"id": "c1", "op": "conv1d", "out_channels": 2, "kernel_size": 3},
        {"id": "c2", "op": "conv1d", "out_channels": 2, "kernel_size": 3}]}
    graph = Graph(spec)
    params = {k: np.abs(v).astype(np.float64) + 0.1 for k, v in graph.init_params(0).items()}
    x = np.random.default_rng(0).standard_normal((1, 1, 15))
    result = explain(graph, params, x, "effective_rf", layer="c2")  # centre unit 5 of 11: reads 5..9
    assert np.flatnonzero(result.input_map > 0).tolist() == [5, 6, 7, 8, 9]
    assert [(a["start"], a["end"]) for a in result.extras["theoretical"]["axes"]] == [(5, 9)]
