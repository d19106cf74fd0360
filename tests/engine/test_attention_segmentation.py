"""Attention for models whose output is a map of class scores (K, H, W) (segmentation): the target's score is the
sum of class k's logits over a region of the map (``region=[y0, x0, y1, x1]``, half-open, in output positions),
by default the whole map."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Graph
from engine.attention import METHODS, AttributionError, explain
from engine.attention.common import class_scores, input_gradients, resolve_region, score_node
from engine.gradcheck import check_function

# x (2, 8, 8) -> conv 3x3 (4) -> ReLU "act" -> conv 3x3 stride 2 (3 classes): a 3 x 4 x 4 map of logits -> softmax
SEGMENTER = {"input_shape": [2, 8, 8], "nodes": [
    {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"id": "act", "op": "relu"},
    {"id": "logits", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
    {"id": "probs", "op": "softmax", "dim": 1},
]}
OPTIONS = {"smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 8}, "occlusion": {"window": 2, "stride": 2}}


def setup(seed: int = 0) -> tuple[Graph, dict, np.ndarray]:
    graph = Graph(SEGMENTER)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=seed).items()}
    return graph, params, np.random.default_rng(50 + seed).standard_normal((1, 2, 8, 8))


def region_gradient(graph: Graph, params: dict, x: np.ndarray, target: int, region: list[int] | None) -> np.ndarray:
    grads, _ = input_gradients(graph, params, x, target, region=resolve_region(graph, region))
    return grads[0]


def test_the_score_is_the_class_logits_summed_over_the_region():
    graph, params, x = setup()
    logits = graph.forward(x, params).activations["logits"]
    assert score_node(graph) == "logits"  # the softmax is skipped: attribution reads logits
    result = explain(graph, params, x, "saliency", target=2, region=[1, 0, 3, 2])
    assert result.score == pytest.approx(logits[0, 2, 1:3, 0:2].sum())
    assert result.region == [1, 0, 3, 2] and result.input_map.shape == (8, 8)
    whole = explain(graph, params, x, "saliency", target=2)
    assert whole.score == pytest.approx(logits[0, 2].sum()) and whole.region is None


def test_the_default_target_is_the_class_with_the_largest_score_over_the_region():
    graph, params, x = setup(seed=1)
    logits = graph.forward(x, params).activations["logits"]
    for region in ([0, 0, 4, 4], [0, 0, 1, 1], [2, 1, 4, 3]):
        y0, x0, y1, x1 = region
        expected = int(np.argmax(logits[0, :, y0:y1, x0:x1].sum(axis=(1, 2))))
        assert explain(graph, params, x, "gradcam", region=region).target == expected, region


def test_a_region_gradient_is_the_sum_of_its_pixels_gradients():
    graph, params, x = setup(seed=2)
    box = [1, 1, 3, 4]  # rows 1-2, columns 1-3 of the 4 x 4 map
    per_pixel = sum(region_gradient(graph, params, x, 1, [y, xx, y + 1, xx + 1])
                    for y in range(1, 3) for xx in range(1, 4))
    assert np.abs(per_pixel).max() > 1e-3, "zero gradients prove nothing"
    np.testing.assert_allclose(region_gradient(graph, params, x, 1, box), per_pixel, rtol=1e-10, atol=1e-14)
    # the default, the whole map, is the region covering every output position
    np.testing.assert_allclose(region_gradient(graph, params, x, 1, None), region_gradient(graph, params, x, 1,
                                                                                           [0, 0, 4, 4]))
    assert not np.allclose(region_gradient(graph, params, x, 1, None), region_gradient(graph, params, x, 1, box))


def region_gradient_error(region: list[int], wrong_region: list[int] | None = None) -> float:
    """Relative error of the region score's input gradient against central differences; ``wrong_region`` takes
    the analytic gradient of another region's score instead (a deliberately wrong gradient)."""
    graph, params, x = setup(seed=3)
    box = resolve_region(graph, region)

    def score(x_: np.ndarray) -> np.ndarray:
        logits = graph.forward(x_, params, keep_caches=False, stop_at="logits", keep=()).output
        return class_scores(logits, box)[0, 0]

    def analytic(dout: np.ndarray) -> tuple[np.ndarray]:
        return (dout * region_gradient(graph, params, x, 0, wrong_region or region)[None],)

    return check_function(score, analytic, [x])[0]


def test_the_region_score_gradient_matches_central_differences():
    for region in ([0, 0, 4, 4], [1, 2, 2, 4], [3, 0, 4, 1]):
        assert region_gradient_error(region) < 1e-6, region
    assert region_gradient_error([1, 2, 2, 4], wrong_region=[1, 2, 3, 4]) > 1e-2  # negative control


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS[m].uses_target and m != "cam"])
def test_every_class_method_explains_a_region(method):
    graph, params, x = setup(seed=4)
    whole = explain(graph, params, x, method, target=0, **OPTIONS.get(method, {}))
    corner = explain(graph, params, x, method, target=0, region=[0, 0, 2, 2], **OPTIONS.get(method, {}))
    assert corner.input_map.shape == whole.input_map.shape == (8, 8)
    assert corner.region == [0, 0, 2, 2] and np.abs(corner.layer_map).max() > 0
    assert not np.allclose(corner.layer_map, whole.layer_map), "the region changed nothing"


def test_occlusion_of_a_region_only_sees_what_reaches_it():
    # a top-left region of the 4 x 4 map (rows 0-1, columns 0-1) reads input rows and columns 0..4 at most
    # (two 3x3 convolutions, the second of stride 2): covering the far corner changes nothing
    graph, params, x = setup(seed=5)
    result = explain(graph, params, x, "occlusion", target=1, region=[0, 0, 2, 2], window=1, stride=1)
    assert np.all(result.layer_map[5:, :] == 0) and np.all(result.layer_map[:, 5:] == 0)
    assert np.abs(result.layer_map[:5, :5]).max() > 0


@pytest.mark.torch
def test_grad_cam_of_a_region_matches_pytorch(torch_or_skip):
    torch = torch_or_skip
    for seed in range(3):
        graph, params, x = setup(seed)
        conv1 = torch.nn.Conv2d(2, 4, 3, padding=1).double()
        logits_conv = torch.nn.Conv2d(4, 3, 3, stride=2, padding=1).double()
        with torch.no_grad():
            for module, name in ((conv1, "conv1"), (logits_conv, "logits")):
                module.weight.copy_(torch.from_numpy(params[f"{name}.weight"]))
                module.bias.copy_(torch.from_numpy(params[f"{name}.bias"]))
        for target, (y0, x0, y1, x1) in ((0, (0, 0, 4, 4)), (2, (1, 1, 3, 2)), (1, (3, 3, 4, 4))):
            act = torch.relu(conv1(torch.from_numpy(x)))
            act.retain_grad()
            logits_conv(act)[0, target, y0:y1, x0:x1].sum().backward()
            theirs = torch.einsum("khw,k->hw", act[0].detach(), act.grad[0].mean(dim=(1, 2))).numpy()
            mine = explain(graph, params, x, "gradcam", target=target, region=[y0, x0, y1, x1])
            assert np.abs(theirs).max() > 1e-6
            np.testing.assert_allclose(mine.layer_map, theirs, rtol=1e-5, atol=1e-7,
                                       err_msg=f"seed {seed}, class {target}, region {[y0, x0, y1, x1]}: mine vs torch")


def test_score_cam_uses_the_mean_probability_over_the_region():
    from engine.attention.common import class_probabilities

    logits = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    box = (slice(1, 3), slice(0, 4))
    np.testing.assert_allclose(class_probabilities(logits, 2, box), probs[:, 2, 1:3, :].mean(axis=(1, 2)))
    graph, params, x = setup(seed=6)
    result = explain(graph, params, x, "scorecam", target=1, region=[1, 0, 3, 4])
    assert result.extras["channels_scored"] == 4 and np.abs(result.layer_map).max() > 0


def test_regions_are_checked_in_the_users_terms():
    graph, params, x = setup()
    with pytest.raises(AttributionError, match=r"x needs 0 <= x0 < x1 <= 4 \(half-open\), got x0 = 2, x1 = 5"):
        explain(graph, params, x, "gradcam", region=[0, 2, 1, 5])
    with pytest.raises(AttributionError, match=r"y needs 0 <= y0 < y1 <= 4"):
        explain(graph, params, x, "gradcam", region=[2, 0, 2, 1])  # empty
    with pytest.raises(AttributionError, match=r"4 integers \[y0, x0, y1, x1\]"):
        explain(graph, params, x, "gradcam", region=[0, 0, 2])
    with pytest.raises(AttributionError, match="takes no region"):
        explain(graph, params, x, "eigencam", region=[0, 0, 2, 2])
    with pytest.raises(AttributionError, match="CAM needs"):
        explain(graph, params, x, "cam")
    with pytest.raises(AttributionError, match="classes 0 to 2"):
        explain(graph, params, x, "saliency", target=3)
    classifier = Graph({"input_shape": [1, 4, 4], "nodes": [{"id": "flat", "op": "flatten"},
                                                            {"id": "fc", "op": "linear", "out_features": 2}]})
    with pytest.raises(AttributionError, match="outputs class scores \\[2\\]: leave region out"):
        explain(classifier, classifier.init_params(), np.zeros((1, 1, 4, 4)), "saliency", region=[0, 0, 1, 1])


def test_a_sequence_labelling_output_takes_a_two_number_region():
    # per-time-step classes (K, L): region [l0, l1]
    spec = {"input_shape": [2, 16], "nodes": [
        {"id": "conv", "op": "conv1d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "act", "op": "relu"},
        {"id": "logits", "op": "conv1d", "out_channels": 3, "kernel_size": 1}]}
    graph = Graph(spec)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed=0).items()}
    x = np.random.default_rng(0).standard_normal((1, 2, 16))
    result = explain(graph, params, x, "saliency", target=1, region=[4, 6])
    logits = graph.forward(x, params).output
    assert result.score == pytest.approx(logits[0, 1, 4:6].sum())
    # time steps 4 and 5 read inputs 3..6 only (a 3-wide convolution, then a 1-wide one)
    assert np.flatnonzero(result.layer_map).tolist() == [3, 4, 5, 6]
    with pytest.raises(AttributionError, match=r"2 integers \[l0, l1\]"):
        explain(graph, params, x, "saliency", region=[0, 0, 2, 2])
