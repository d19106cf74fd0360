"""The training lab's networks: which graph spec a set of toggles means, and where pre-trained weights come from.

Four families, all taking ``(N, 1, 28, 28)`` normalised digits and giving 10 logits:

- ``classic``: the shipped LeNet-style network (``engine.models.digits.classic_spec``), optionally with
  batch norm after each convolution and dropout before the classifier. Its pre-trained weights are the
  shipped ``digits_classic`` ones. Two convolutions: too shallow for skip connections to matter.
- ``deep``: ``engine.models.digits.lab_spec``, ``depth`` blocks of two 3x3 convolutions
  (``2 * depth + 2`` convolutions in all), with or without batch norm, skip connections and dropout.
  Deep enough (depth 4 and more) for a plain network to train visibly worse than one with skips.
- ``lstm`` and ``gru_attention``: the recurrent networks of ``engine.models.sequence_digits``, which read a digit
  row by row (28 steps of 28 pixels): the shipped ``digits_lstm`` and ``digits_gru_attention`` with ``num_layers``
  stacked recurrent layers and optional dropout (between the layers and before the classifier). Their
  pre-trained weights are the shipped ones. No batch norm (nothing to normalise: no convolutions), no skips.

Pre-training copies every parameter of the shipped network whose name and shape match the new one
(the usual "load what fits, initialise the rest" of fine-tuning): with batch norm on, the classic
network's convolution weights and classifier come pre-trained and the batch-norm layers start fresh; a stacked
recurrent network gets its first layer and classifier pre-trained, its upper layers fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.graph import Graph
from engine.layers.recurrent import GATES
from engine.models import digits, sequence_digits

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


#: what each recurrent gate is, in the order the weights stack them (for the pictures' labels)
GATE_NAMES = {"i": "input gate", "f": "forget gate", "g": "candidate cell", "o": "output gate",
              "r": "reset gate", "z": "update gate", "n": "candidate state"}


@dataclass(frozen=True)
class LabNetwork:
    """A network the lab trains: its spec and the nodes the page shows.

    A CNN's pictures are ``first_conv``'s filters and ``feature_node``'s feature maps; a recurrent network's
    (``recurrent`` is its recurrent node) are that node's input weights per gate and its per-row states."""

    spec: dict[str, Any]
    family: str  # "classic", "deep", "lstm" or "gru_attention"
    description: str
    first_conv: str | None  # its weights are the filters shown (CNNs)
    feature_node: str | None  # its activation (one sample) is the feature maps shown (CNNs)
    cam_layer: str | None  # last spatial layer, for the explorer's class activation maps (CNNs)
    pretrained_from: str | None  # the shipped model whose weights fine-tuning starts from
    recurrent: str | None = None  # the recurrent node (recurrent networks)
    attention: str | None = None  # the sequence_attention node, if any

    @property
    def gates(self) -> tuple[str, ...]:
        """The recurrent node's gates in the order its weights stack them ("i", "f", "g", "o" for the LSTM)."""
        if self.recurrent is None:
            return ()
        node = next(n for n in self.spec["nodes"] if n["id"] == self.recurrent)
        return tuple(GATES[node["op"]])


def build_network(network: str, depth: int = 4, batch_norm: bool = False, skip_connections: bool = False,
                  dropout: bool = False, dropout_p: float = 0.3, num_layers: int = 1) -> LabNetwork:
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
    if network in ("lstm", "gru_attention"):
        if batch_norm or skip_connections:
            raise ValueError(f"the {network} network is recurrent: batch_norm and skip_connections need a CNN "
                             "('classic' or 'deep')")
        p = dropout_p if dropout else None
        layers = f"{num_layers} stacked layers" if num_layers > 1 else "one layer"
        where = " between the layers and before the classifier" if num_layers > 1 else " before the classifier"
        dropped = f", with dropout {dropout_p:g}{where}" if dropout else ""
        if network == "lstm":
            spec = sequence_digits.lstm_spec(num_layers=num_layers, dropout_p=p)
            words = (f"LSTM reading the digit row by row: {sequence_digits.LSTM_HIDDEN} hidden units, {layers}, "
                     "its last hidden state classified by a fully connected layer (10)")
            return LabNetwork(spec, network, words + dropped, first_conv=None, feature_node=None, cam_layer=None,
                              pretrained_from=sequence_digits.LSTM_ID, recurrent="lstm")
        spec = sequence_digits.gru_attention_spec(num_layers=num_layers, dropout_p=p)
        words = (f"GRU reading the digit row by row: {sequence_digits.GRU_HIDDEN} hidden units, {layers}, attention "
                 "over the 28 rows, a fully connected layer (10)")
        return LabNetwork(spec, network, words + dropped, first_conv=None, feature_node=None, cam_layer=None,
                          pretrained_from=sequence_digits.GRU_ATTENTION_ID, recurrent="gru", attention="attention")
    raise ValueError(f"network must be 'classic', 'deep', 'lstm' or 'gru_attention', got {network!r}")


def shipped_weights(model_id: str) -> Mapping[str, np.ndarray]:
    """The shipped weights of ``model_id`` as stored (FileNotFoundError when they are not installed)."""
    path = digits.weights_path(model_id)
    if not path.is_file():
        raise FileNotFoundError(f"the pre-trained weights of {model_id} are not installed ({path.name}); "
                                f"create them with scripts/train_digits.py {model_id}, or train from scratch")
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
