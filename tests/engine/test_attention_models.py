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


@pytest.mark.parametrize("model_id", ["digits_classic", "digits_resnet"])
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_randomising_the_top_layers_changes_the_maps(model_id, method):
    """Adebayo et al. (2018): a map that survives re-initialising the weights explains nothing."""
    bundle = load_model(model_id)
    graph, trained = bundle.graph, bundle.params
    fresh = graph.init_params(seed=123)
    top = [n.id for n in graph.nodes if graph.by_id[n.id].op.param_shapes()][-2:]  # the last two layers with weights
    randomised = {k: (fresh[k] if k.split(".")[0] in top else v) for k, v in trained.items()}
    images, _ = digits_test_batch()
    correlations = []
    for image in images:
        x = _digit_input(bundle, image)
        target = int(np.argmax(graph.forward(x, trained, keep_caches=False).output[0]))
        before = explain(graph, trained, x, method, target=target).input_map
        after = explain(graph, randomised, x, method, target=target).input_map
        correlations.append(spearman(before, after))
    assert np.median(correlations) < 0.5, f"rank correlations {np.round(correlations, 2)}"


def test_learned_attention_of_the_residual_network_sums_to_one_and_covers_the_digit():
    bundle = load_model("digits_resnet")
    images, _ = digits_test_batch()
    for image in images:
        x = _digit_input(bundle, image)
        result = explain(bundle.graph, bundle.params, x, "learned_attention")
        assert result.layer == bundle.attention_node
        assert result.layer_map.sum() == pytest.approx(1.0, abs=1e-5)
        ink = image[0] > 0.5  # the digit's strokes
        weights_on_ink = (result.input_map * ink).sum() / result.input_map.sum()
        assert weights_on_ink > ink.mean(), "attention should favour the strokes over the background"
