"""The training lab's networks: which graph spec a set of toggles means, and where pre-trained weights come from.

Two families, both taking ``(N, 1, 28, 28)`` normalised digits and giving 10 logits:

- ``classic``: the shipped LeNet-style network (``engine.models.digits.classic_spec``), optionally with
  batch norm after each convolution and dropout before the classifier. Its pre-trained weights are the
  shipped ``digits_classic`` ones. Two convolutions: too shallow for skip connections to matter.
- ``deep``: ``engine.models.digits.lab_spec``, ``depth`` blocks of two 3x3 convolutions
  (``2 * depth + 2`` convolutions in all), with or without batch norm, skip connections and dropout.
  Deep enough (depth 4 and more) for a plain network to train visibly worse than one with skips.

Pre-training copies every parameter of the shipped network whose name and shape match the new one
(the usual "load what fits, initialise the rest" of fine-tuning): with batch norm on, the classic
network's convolution weights and classifier come pre-trained and the batch-norm layers start fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.graph import Graph
from engine.models import digits

Node = dict[str, Any]
#: (model id) -> its shipped parameters; raises FileNotFoundError when they are not installed
PretrainedSource = Callable[[str], Mapping[str, np.ndarray]]


def classic_variant(batch_norm: bool = False, dropout: bool = False, dropout_p: float = 0.3) -> dict[str, Any]:
    """The classic network with optional batch norm (after conv1 and conv2, which then have no bias) and
    dropout (before ``fc``). With both off this is exactly ``digits.classic_spec()``."""
    nodes: list[Node] = []
    for node in digits.classic_spec()["nodes"]:
        node = dict(node)
        if node["op"] == "conv2d" and batch_norm:
            node["bias"] = False
        if node["id"] == "fc" and dropout:
            nodes.append({"id": "dropout", "op": "dropout", "p": dropout_p})
        nodes.append(node)
        if node["op"] == "conv2d" and batch_norm:
            nodes.append({"id": f"{node['id'].replace('conv', 'bn')}", "op": "batch_norm"})
    return {"input_shape": list(digits.INPUT_SHAPE), "nodes": nodes}


@dataclass(frozen=True)
class LabNetwork:
    """A network the lab trains: its spec and the nodes the page shows."""

    spec: dict[str, Any]
    family: str  # "classic" or "deep"
    description: str
    first_conv: str  # its weights are the filters shown
    feature_node: str  # its activation (one sample) is the feature maps shown
    cam_layer: str  # last spatial layer, for the explorer's class activation maps
    pretrained_from: str | None  # the shipped model whose weights fine-tuning starts from


def build_network(network: str, depth: int = 4, batch_norm: bool = False, skip_connections: bool = False,
                  dropout: bool = False, dropout_p: float = 0.3) -> LabNetwork:
    """The network for these toggles (they are validated by the request schema)."""
    extras = [name for name, on in (("batch norm", batch_norm), ("skip connections", skip_connections),
                                    (f"dropout {dropout_p:g}", dropout)) if on]
    with_text = f", with {', '.join(extras)}" if extras else ""
    if network == "classic":
        if skip_connections:
            raise ValueError("skip_connections needs network 'deep': the classic network has two convolutions, "
                             "too shallow for skip connections to matter")
        spec = classic_variant(batch_norm, dropout, dropout_p)
        return LabNetwork(spec, "classic", "classic LeNet-style network: conv 5x5 (8), pool, conv 5x5 (16), pool, "
                                           "fully connected (10)" + with_text,
                          first_conv="conv1", feature_node="relu1", cam_layer="relu2",
                          pretrained_from=digits.CLASSIC_ID)
    if network == "deep":
        spec = digits.lab_spec(batch_norm=batch_norm, dropout=dropout, skip=skip_connections, depth=depth,
                               dropout_p=dropout_p)
        convs = sum(1 for n in spec["nodes"] if n["op"] == "conv2d")
        last_block = f"block{depth}_out"
        return LabNetwork(spec, "deep", f"deep network: {convs} convolutions 3x3 in {depth} blocks of two"
                                        + with_text,
                          first_conv="stem_conv", feature_node="stem_relu", cam_layer=last_block,
                          pretrained_from=None)
    raise ValueError(f"network must be 'classic' or 'deep', got {network!r}")


def shipped_weights(model_id: str) -> Mapping[str, np.ndarray]:
    """The shipped weights of ``model_id`` as stored (FileNotFoundError when they are not installed)."""
    path = digits.weights_path(model_id)
    if not path.is_file():
        raise FileNotFoundError(f"the pre-trained weights of {model_id} are not installed ({path.name}); "
                                "create them with scripts/train_digits.py, or train from scratch")
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k], dtype=np.float32) for k in data.files}


def transfer(graph: Graph, fresh: Mapping[str, np.ndarray], source: Mapping[str, np.ndarray]
             ) -> tuple[dict[str, np.ndarray], list[str]]:
    """``fresh`` with every parameter of ``source`` of the same name and shape copied in.

    Returns the parameters and the names copied (in graph order)."""
    shapes = graph.param_shapes()
    params = {k: np.array(v, copy=True) for k, v in fresh.items()}
    copied = []
    for name, shape in shapes.items():
        value = source.get(name)
        if value is not None and tuple(value.shape) == tuple(shape):
            params[name] = np.array(value, dtype=np.float32, copy=True)
            copied.append(name)
    return params, copied
