"""Every attention method on tiny networks whose maps are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import Graph
from engine.attention import METHODS, AttributionError, explain
from engine.attention.resize import resize_bilinear

# Network 1: x (1, 2, 2) -> 1x1 conv with 2 filters (w = [2, -1], b = [0, 1]) -> ReLU "act"
#            -> global average pooling -> linear (W = [[1, 2], [3, -1]], b = 0)
NET1 = {"input_shape": [1, 2, 2], "nodes": [
    {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 1},
    {"id": "act", "op": "relu"},
    {"id": "gap", "op": "global_avg_pool"},
    {"id": "fc", "op": "linear", "out_features": 2, "bias": False},
]}
NET1_PARAMS = {
    "conv.weight": np.array([2.0, -1.0]).reshape(2, 1, 1, 1),
    "conv.bias": np.array([0.0, 1.0]),
    "fc.weight": np.array([[1.0, 2.0], [3.0, -1.0]]),
}
# x = [[1, -2], [3, -4]]: A0 = relu(2x) = [[2, 0], [6, 0]], A1 = relu(1 - x) = [[0, 3], [0, 5]]
# pooled [2, 2]; logits: class 0 = 2 + 4 = 6, class 1 = 6 - 2 = 4 -> top prediction 0
X1 = np.array([[[[1.0, -2.0], [3.0, -4.0]]]])
A0 = np.array([[2.0, 0.0], [6.0, 0.0]])
A1 = np.array([[0.0, 3.0], [0.0, 5.0]])

# Network 2: x (1, 2, 2) -> 1x1 conv copying x into 2 channels -> ReLU "act" -> flatten -> linear to 1 score,
# so that the gradient differs from position to position: g0 = W[:4], g1 = W[4:] as 2x2 grids.
NET2 = {"input_shape": [1, 2, 2], "nodes": [
    {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 1, "bias": False},
    {"id": "act", "op": "relu"},
    {"id": "flat", "op": "flatten"},
    {"id": "fc", "op": "linear", "out_features": 1, "bias": False},
]}
NET2_PARAMS = {
    "conv.weight": np.ones((2, 1, 1, 1)),
    "fc.weight": np.array([[1.0, -1.0, 0.0, 2.0, 0.5, 0.5, -2.0, 1.0]]),
}
X2 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # A0 = A1 = x, sum 10


def run(net, params, x, method, **kw):
    return explain(Graph(net), params, x, method, **kw)


def test_default_target_is_the_top_prediction_and_default_layer_feeds_the_pooling():
    result = run(NET1, NET1_PARAMS, X1, "gradcam")
    assert result.target == 0 and result.layer == "act"
    assert result.score == pytest.approx(6.0)


def test_gradcam_by_hand():
    # S0 = mean(A0) + 2 mean(A1): gradients 1/4 and 1/2 everywhere; alpha = [0.25, 0.5]
    # L = 0.25 A0 + 0.5 A1 = [[0.5, 1.5], [1.5, 2.5]]; normalised (min 0.5, max 2.5): [[0, .5], [.5, 1]]
    result = run(NET1, NET1_PARAMS, X1, "gradcam")
    np.testing.assert_allclose(result.layer_map, [[0.5, 1.5], [1.5, 2.5]], rtol=1e-6)
    np.testing.assert_allclose(result.layer_map_normalized, [[0, 0.5], [0.5, 1]], atol=1e-6)


def test_cam_by_hand_is_grad_cam_times_the_number_of_positions():
    # w = fc row 0 = [1, 2]: L = A0 + 2 A1 = [[2, 6], [6, 10]] (= 4 x Grad-CAM: 4 positions averaged)
    result = run(NET1, NET1_PARAMS, X1, "cam")
    np.testing.assert_allclose(result.layer_map, [[2, 6], [6, 10]], rtol=1e-6)
    with pytest.raises(AttributionError, match="CAM needs"):
        run(NET2, NET2_PARAMS, X2, "cam", layer="act")


def test_gradcam_on_position_dependent_gradients():
    # g0 = [[1, -1], [0, 2]] (mean 0.5), g1 = [[.5, .5], [-2, 1]] (mean 0): L = 0.5 x
    result = run(NET2, NET2_PARAMS, X2, "gradcam", layer="act")
    np.testing.assert_allclose(result.layer_map, 0.5 * X2[0, 0], rtol=1e-6)


def test_layercam_by_hand():
    # relu(g0) A0 + relu(g1) A1 = [[1, 0], [0, 2]]*x + [[.5, .5], [0, 1]]*x = [[1.5, 1], [0, 12]]
    result = run(NET2, NET2_PARAMS, X2, "layercam", layer="act")
    np.testing.assert_allclose(result.layer_map, [[1.5, 1.0], [0.0, 12.0]], rtol=1e-6)


def test_xgradcam_by_hand():
    # w0 = (1*1 + 2*-1 + 3*0 + 4*2) / 10 = 0.7, w1 = (.5 + 1 - 6 + 4) / 10 = -0.05: L = 0.65 x
    result = run(NET2, NET2_PARAMS, X2, "xgradcam", layer="act")
    np.testing.assert_allclose(result.layer_map, 0.65 * X2[0, 0], rtol=1e-6)


def test_gradcam_plus_plus_by_hand():
    # a = g^2 / (2 g^2 + sum(A) g^3), sum(A) = 10; w_k = sum a * relu(g)
    # channel 0: g=1 -> 1/12 * 1; g=-1 -> relu 0; g=0 -> 0; g=2 -> 4/88 * 2 = 1/11  => w0 = 23/132
    # channel 1: g=.5 (twice) -> (.25/1.75) * .5 = 1/14 each; g=-2 -> 0; g=1 -> 1/12  => w1 = 1/7 + 1/12 = 19/84
    result = run(NET2, NET2_PARAMS, X2, "gradcam++", layer="act")
    np.testing.assert_allclose(result.layer_map, (23 / 132 + 19 / 84) * X2[0, 0], rtol=1e-6)


def test_eigencam_by_hand():
    # positions x channels, centred: [[-3, 0], [-1, 0], [1, 0], [3, 0]]; first component (1, 0);
    # projection [[-3, -1], [1, 3]] (sign agrees with the mean map); normalised after ReLU: [[0, 0], [1/3, 1]]
    result = run(NET1, NET1_PARAMS, np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), "eigencam")
    np.testing.assert_allclose(result.layer_map, [[-3, -1], [1, 3]], atol=1e-6)
    np.testing.assert_allclose(result.layer_map_normalized, [[0, 0], [1 / 3, 1]], atol=1e-6)
    assert result.target is None


def test_scorecam_by_hand():
    # mask 0 = A0 min-max: [[1/3, 0], [1, 0]] -> x*mask = [[1/3, 0], [3, 0]] -> pooled [5/3, 2/3] -> logits [3, 13/3]
    # mask 1 = A1 min-max: [[0, .6], [0, 1]] -> x*mask = [[0, -1.2], [0, -4]] -> pooled [0, 2.3] -> logits [4.6, -2.3]
    # baseline 0 -> pooled [0, 1] -> logits [2, -1]; alpha_k = p0(masked_k) - p0(baseline)
    def p0(l0, l1):
        return 1 / (1 + math.exp(l1 - l0))

    alpha0 = p0(3, 13 / 3) - p0(2, -1)
    alpha1 = p0(4.6, -2.3) - p0(2, -1)
    result = run(NET1, NET1_PARAMS, X1, "scorecam")
    np.testing.assert_allclose(result.layer_map, alpha0 * A0 + alpha1 * A1, rtol=1e-5)


def test_saliency_and_guided_backprop_by_hand():
    # class 1: S1 = 3 mean(relu(2x)) - mean(relu(1 - x)); dS/dx = 1.5 [x > 0] + 0.25 [x < 1]
    saliency = run(NET1, NET1_PARAMS, X1, "saliency", target=1)
    np.testing.assert_allclose(saliency.layer_map, [[1.5, 0.25], [1.5, 0.25]], rtol=1e-6)
    assert saliency.layer == "input"
    # guided: at the ReLU the gradient of channel 1 is -1/4 < 0 and is stopped: only 1.5 [x > 0] remains
    guided = run(NET1, NET1_PARAMS, X1, "guided_backprop", target=1)
    np.testing.assert_allclose(guided.layer_map, [[1.5, 0.0], [1.5, 0.0]], rtol=1e-6)


def test_smoothgrad_without_noise_is_the_saliency_map():
    plain = run(NET1, NET1_PARAMS, X1, "saliency", target=1).layer_map
    smooth = run(NET1, NET1_PARAMS, X1, "smoothgrad", target=1, noise_level=0.0, samples=4).layer_map
    np.testing.assert_allclose(smooth, plain, rtol=1e-6)


def test_smoothgrad_averages_saliency_over_noisy_copies():
    graph = Graph(NET1)
    noise = np.random.default_rng(0).standard_normal((3, 1, 2, 2)) * 0.1 * (X1.max() - X1.min())
    expected = np.mean([explain(graph, NET1_PARAMS, X1 + n[None], "saliency", target=1).layer_map for n in noise],
                       axis=0)
    result = explain(graph, NET1_PARAMS, X1, "smoothgrad", target=1, noise_level=0.1, samples=3)
    np.testing.assert_allclose(result.layer_map, expected, rtol=1e-6)


def test_integrated_gradients_is_x_times_gradient_where_the_network_is_linear():
    # all-positive x and filters: both ReLUs stay active along the path, S is linear and IG = x * dS/dx
    params = dict(NET1_PARAMS, **{"conv.weight": np.array([2.0, 1.0]).reshape(2, 1, 1, 1),
                                  "conv.bias": np.zeros(2)})
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # S0 = mean(2x) + 2 mean(x) = x.sum(); dS/dx = 1 -> IG = x
    result = run(NET1, params, x, "integrated_gradients", target=0)
    np.testing.assert_allclose(result.layer_map, x[0, 0], rtol=1e-6)
    assert result.extras["completeness_error"] < 1e-6
    assert result.signed


def test_occlusion_by_hand():
    # S0 per pixel: relu(2x)/4 + 2 relu(1 - x)/4; covering a pixel (x -> 0) leaves 0 + 2/4 = .5
    # x = 1: .5 -> .5, drop 0;  x = -2: 1.5 -> .5, drop 1;  x = 3: 1.5 -> .5, drop 1;  x = -4: 2.5 -> .5, drop 2
    result = run(NET1, NET1_PARAMS, X1, "occlusion", window=1, stride=1)
    np.testing.assert_allclose(result.layer_map, [[0, 1], [1, 2]], atol=1e-6)
    np.testing.assert_allclose(result.layer_map_normalized, [[0, 0.5], [0.5, 1]], atol=1e-6)


def test_learned_attention_is_the_softmax_over_positions():
    # scores = x = [[0, ln 2], [ln 3, 0]] -> weights [1, 2, 3, 1] / 7
    spec = {"input_shape": [1, 2, 2], "nodes": [
        {"id": "score", "op": "conv2d", "out_channels": 1, "kernel_size": 1, "bias": False},
        {"id": "attn", "op": "spatial_softmax"},
        {"id": "pool", "op": "attention_pool", "inputs": ["input", "attn"]},
        {"id": "fc", "op": "linear", "out_features": 2},
    ]}
    params = {"score.weight": np.ones((1, 1, 1, 1)), "fc.weight": np.array([[1.0], [-1.0]]), "fc.bias": np.zeros(2)}
    x = np.array([[[[0.0, math.log(2)], [math.log(3), 0.0]]]])
    result = run(spec, params, x, "learned_attention")
    np.testing.assert_allclose(result.layer_map, np.array([[1, 2], [3, 1]]) / 7, rtol=1e-6)
    assert result.layer == "attn"
    with pytest.raises(AttributionError, match="no attention layer"):
        run(NET1, NET1_PARAMS, X1, "learned_attention")


def test_effective_receptive_field_of_a_3x3_conv_unit_is_its_window():
    spec = {"input_shape": [1, 7, 7], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "c2", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
    ]}
    graph = Graph(spec)
    params = {k: np.abs(v).astype(np.float64) + 0.1 for k, v in graph.init_params(0).items()}
    x = np.random.default_rng(0).standard_normal((1, 1, 7, 7))
    result = explain(graph, params, x, "effective_rf", layer="c2")  # centre unit (1, 1) of 3x3 output
    nonzero = np.argwhere(result.input_map > 0)
    # two stacked 3x3 convs: unit (1, 1) reads rows/cols 1..5 of the input
    assert nonzero.min(axis=0).tolist() == [1, 1] and nonzero.max(axis=0).tolist() == [5, 5]
    box = result.extras["theoretical"]["axes"]
    assert [(a["start"], a["end"]) for a in box] == [(1, 5), (1, 5)]


def test_unknown_method_target_and_layer_are_refused_clearly():
    graph = Graph(NET1)
    with pytest.raises(AttributionError, match="unknown method 'magic'"):
        explain(graph, NET1_PARAMS, X1, "magic")
    with pytest.raises(AttributionError, match="classes 0 to 1"):
        explain(graph, NET1_PARAMS, X1, "gradcam", target=7)
    with pytest.raises(AttributionError, match="2D spatial extent"):
        explain(graph, NET1_PARAMS, X1, "gradcam", layer="fc")
    with pytest.raises(AttributionError, match="one input at a time"):
        explain(graph, NET1_PARAMS, np.concatenate([X1, X1]), "gradcam")


def test_every_method_has_a_description_and_runs():
    graph = Graph(NET1)
    for name, info in METHODS.items():
        assert info.description and info.paper
        if name == "learned_attention":
            continue
        result = explain(graph, NET1_PARAMS, X1, name, **({"window": 1, "stride": 1} if name == "occlusion" else {}))
        assert result.input_map.shape == (2, 2)
        lo = -1 if result.signed else 0
        assert lo <= result.input_map_normalized.min() and result.input_map_normalized.max() <= 1


def test_bilinear_resize_by_hand():
    # 2 -> 4 with half-pixel centres: output i samples (i + .5)/2 - .5 = -.25, .25, .75, 1.25 -> clamp
    row = resize_bilinear(np.array([[0.0, 4.0]]), (1, 4))
    np.testing.assert_allclose(row, [[0.0, 1.0, 3.0, 4.0]])


def test_bilinear_resize_matches_pytorch(torch_or_skip):
    torch = torch_or_skip
    maps = np.random.default_rng(0).standard_normal((3, 7, 5))
    ours = resize_bilinear(maps, (224, 160))
    theirs = torch.nn.functional.interpolate(torch.from_numpy(maps)[None], size=(224, 160), mode="bilinear",
                                             align_corners=False)[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_a_work_budget_shrinks_many_pass_defaults_and_refuses_explicit_excess():
    from engine.attention.budget import graph_macs, plan

    graph = Graph(NET1)
    per_pass = graph_macs(graph)  # conv 2*1*4 = 8 MACs + linear 2*2 = 4 MACs
    assert per_pass == 12
    # Integrated Gradients costs 2 + 3 * steps units: 20 units allow 6 steps
    assert plan(graph, "integrated_gradients", {}, max_macs=20 * per_pass)["steps"] == 6
    assert plan(graph, "integrated_gradients", {}, max_macs=None)["steps"] == 64
    with pytest.raises(AttributionError, match="use steps <= 6"):
        plan(graph, "integrated_gradients", {"steps": 7}, max_macs=20 * per_pass)
    with pytest.raises(AttributionError, match="larger stride"):
        plan(graph, "occlusion", {"window": 1, "stride": 1}, max_macs=3 * per_pass)  # 4 windows + 1 > 3
    result = explain(graph, NET1_PARAMS, X1, "integrated_gradients", max_macs=20 * per_pass)
    assert result.extras["steps"] == 6


def test_occlusion_defaults_grow_to_fit_the_budget_and_gaps_are_refused():
    from engine.attention.budget import graph_macs, plan

    spec = {"input_shape": [1, 32, 32], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "gap", "op": "global_avg_pool"},
        {"id": "fc", "op": "linear", "out_features": 2}]}
    graph = Graph(spec)
    # defaults: window 4, stride 2 -> 15 x 15 = 225 copies; a budget of 20 passes doubles them to window 16,
    # stride 8 -> 3 x 3 = 9 copies (window 8, stride 4 would make 7 x 7 = 49)
    options = plan(graph, "occlusion", {}, max_macs=20 * graph_macs(graph))
    assert options == {"window": 16, "stride": 8}
    with pytest.raises(AttributionError, match="stride of 1 up to the window"):
        explain(graph, graph.init_params(), np.zeros((1, 1, 32, 32), dtype=np.float32), "occlusion",
                window=2, stride=4)
