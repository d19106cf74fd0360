"""Attention maps on the real, trained models: localisation, completeness and the Adebayo sanity check."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from engine.attention import explain
from engine.datasets.mnist import load_mnist
from engine.models.registry import load_model

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order: the maps are continuous)."""
    ra = np.argsort(np.argsort(a.ravel())).astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel())).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


@cache
def cat_and_coffee():
    """A 224 x 224 image whose left half is the cat photo's centre and right half the coffee photo's.

    The halves are known by construction, so "where is the cat" needs no hand-drawn box.
    """
    from app.imaging import load_image_file

    bundle = load_model("efficientnet_lite0")
    cat = load_image_file(SAMPLES / "cat.jpg", bundle.preprocessing)
    coffee = load_image_file(SAMPLES / "coffee.jpg", bundle.preprocessing)
    canvas = np.concatenate([cat[:, 56:168], coffee[:, 56:168]], axis=1)
    return bundle, bundle.preprocessing.normalize(canvas)


@pytest.mark.parametrize("method", ["gradcam", "xgradcam"])
def test_gradcam_puts_the_cat_class_on_the_cat_and_the_coffee_class_on_the_coffee(method):
    bundle, x = cat_and_coffee()
    logits = bundle.graph.forward(x, bundle.params, keep_caches=False).output[0]
    cat_class = max(range(281, 286), key=lambda i: logits[i])  # tabby .. Egyptian cat
    coffee_class = max((967, 968), key=lambda i: logits[i])  # espresso, cup
    for target, half in ((cat_class, slice(0, 112)), (coffee_class, slice(112, 224))):
        result = explain(bundle.graph, bundle.params, x, method, target=target)
        share = result.input_map_normalized[:, half].sum() / result.input_map_normalized.sum()
        assert share > 0.75, f"{method} for {bundle.labels[target]}: only {share:.0%} of the map on its half"
        assert result.layer == bundle.cam_layer


@cache
def digits_test_batch(n: int = 8):
    """The first ``n`` held-out digits, pixels in [0, 1]: (n, 1, 28, 28)."""
    return load_mnist("test", normalize=False, limit=n)


def _digit_input(bundle, image):
    """A digit image (1, 28, 28) in [0, 1] through the model's own preprocessing: (1, 1, 28, 28)."""
    return bundle.preprocessing.normalize((image[0] * 255).round().astype(np.uint8))


def test_integrated_gradients_add_up_to_the_score_difference_on_a_trained_network():
    bundle = load_model("digits_resnet")
    images, _ = digits_test_batch()
    for image in images[:3]:
        result = explain(bundle.graph, bundle.params, _digit_input(bundle, image), "integrated_gradients")
        assert result.extras["completeness_error"] < 0.01, result.extras


def _cascade(bundle, method, images):
    """Adebayo et al.'s cascading randomisation: re-initialise the layers with weights from the top
    down, one more at each step; return the median rank correlation with the trained maps per step."""
    graph, trained = bundle.graph, bundle.params
    fresh = graph.init_params(seed=123)
    weighted = [n.id for n in graph.nodes if n.op.param_shapes()]
    inputs = [_digit_input(bundle, image) for image in images]
    targets = [int(np.argmax(graph.forward(x, trained, keep_caches=False).output[0])) for x in inputs]
    before = [explain(graph, trained, x, method, target=t).input_map for x, t in zip(inputs, targets)]
    medians = []
    for depth in range(1, len(weighted) + 1):
        top = set(weighted[-depth:])
        randomised = {k: (fresh[k] if k.split(".")[0] in top else v) for k, v in trained.items()}
        after = [explain(graph, randomised, x, method, target=t).input_map for x, t in zip(inputs, targets)]
        medians.append(float(np.median([spearman(b, a) for b, a in zip(before, after)])))
    return medians


@pytest.mark.parametrize("model_id", ["digits_classic", "digits_resnet"])
def test_randomising_the_top_layers_changes_the_maps(model_id):
    """Adebayo et al. (2018): a map that survives re-initialising the weights explains nothing.

    Grad-CAM depends on the top layers: re-initialising the top two layers with weights already drops
    its rank correlation below 0.5. The vanilla gradient of these small networks keeps much of the
    input's structure until the cascade reaches the bottom (classic network: 0.75 with the top two
    re-initialised), as the paper also reports for gradients; with every layer re-initialised it
    falls below 0.5.
    """
    bundle = load_model(model_id)
    images, _ = digits_test_batch()
    gradcam = _cascade(bundle, "gradcam", images)
    assert gradcam[1] < 0.5, f"Grad-CAM rank correlations down the cascade: {np.round(gradcam, 2)}"
    saliency = _cascade(bundle, "saliency", images)
    assert saliency[-1] < 0.5, f"saliency rank correlations down the cascade: {np.round(saliency, 2)}"


def test_learned_attention_is_the_models_softmax_and_peaks_on_the_digit():
    """The residual network's attention: a distribution over its 7 x 7 positions, computed by the
    model itself (softmax of the 1x1 score convolution), peaked rather than uniform, with its peak on a
    cell that holds part of the digit's bounding box."""
    bundle = load_model("digits_resnet")
    images, _ = digits_test_batch()
    for image in images:
        x = _digit_input(bundle, image)
        result = explain(bundle.graph, bundle.params, x, "learned_attention")
        assert result.layer == bundle.attention_node
        weights = result.layer_map
        scores = bundle.graph.forward(x, bundle.params, keep_caches=False).activations[
            bundle.graph.by_id[bundle.attention_node].inputs[0]][0, 0].astype(np.float64)
        softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        np.testing.assert_allclose(weights, softmax, atol=1e-6)
        assert weights.max() > 5 / weights.size, "attention should be peaked, not uniform"
        rows, cols = np.nonzero(image[0] > 0.5)
        cell = 28 // weights.shape[0]
        peak_row, peak_col = np.unravel_index(np.argmax(weights), weights.shape)
        assert rows.min() // cell <= peak_row <= rows.max() // cell
        assert cols.min() // cell <= peak_col <= cols.max() // cell
