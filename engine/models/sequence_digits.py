"""The recurrent digit networks: a digit read as a sequence, one row per time step, trained by the engine.

- ``digits_lstm``: an LSTM reads the 28 rows of a digit, top to bottom, one row (28 pixels) per step, and a
  linear layer classifies its final hidden state.
- ``digits_gru_attention``: a GRU reads the rows the same way; attention pooling over its 28 outputs (a score
  per row, softmax weights that sum to 1, the weighted sum) feeds the linear layer, so the weights say which
  rows the decision leaned on.

Both take the same ``(N, 1, 28, 28)`` digits and ``PREPROCESSING`` as the digit CNNs (``engine.models.digits``):
a ``reshape`` to ``(28, 28)`` at the start turns an image into 28 steps of 28 features. They output 10 logits.
``RECIPES`` holds the training settings ``scripts/train_digits.py`` uses to re-create the shipped weights, and
``lab_spec`` builds the training lab's recurrent variants.
"""

from __future__ import annotations

from typing import Any

from engine.models.bundle import ModelBundle
from engine.models.digits import INPUT_SHAPE, shipped_bundle
from engine.training import TrainConfig

LSTM_ID = "digits_lstm"
GRU_ATTENTION_ID = "digits_gru_attention"
STEPS = FEATURES = 28  # 28 rows of 28 pixels
LSTM_HIDDEN = 128
GRU_HIDDEN = 64
ATTENTION_SIZE = 32

Node = dict[str, Any]


def _rows() -> Node:
    return {"id": "rows", "op": "reshape", "shape": [STEPS, FEATURES]}


def _head(dropout_p: float | None) -> list[Node]:
    """[dropout] -> fc 10: the classifier both networks end in."""
    dropout = [{"id": "dropout", "op": "dropout", "p": dropout_p}] if dropout_p else []
    return [*dropout, {"id": "fc", "op": "linear", "out_features": 10}]


def _recurrent(node_id: str, op: str, hidden_size: int, output: str, num_layers: int,
               dropout_p: float | None) -> Node:
    """A recurrent node; with several layers, ``dropout_p`` also drops between them (training only, as torch)."""
    if not 1 <= num_layers <= 3:
        raise ValueError(f"num_layers is the number of stacked recurrent layers, from 1 to 3; got {num_layers}")
    if dropout_p is not None and not 0 < dropout_p < 1:
        raise ValueError(f"dropout_p must be between 0 and 1 (exclusive), got {dropout_p}")
    node: Node = {"id": node_id, "op": op, "hidden_size": hidden_size, "output": output}
    if num_layers > 1:
        node["num_layers"] = num_layers
        if dropout_p:
            node["dropout"] = dropout_p
    return node


def lstm_spec(hidden_size: int = LSTM_HIDDEN, num_layers: int = 1, dropout_p: float | None = None
              ) -> dict[str, Any]:
    """Row by row into an LSTM, its final hidden state classified::

        (1, 28, 28) -> rows: reshape (28, 28) -> lstm (hidden_size, output "hidden"): h_n (num_layers, H)
        -> last: the top layer's h_n (H) -> [dropout] -> fc 10

    The shipped ``digits_lstm`` has one layer and no dropout; the training lab stacks ``num_layers`` layers
    and, with ``dropout_p``, drops between them and before ``fc``. ``last`` is a ``slice`` of h_n's last row
    (with one layer, that is all of it: a flatten).
    """
    nodes: list[Node] = [_rows(), _recurrent("lstm", "lstm", hidden_size, "hidden", num_layers, dropout_p)]
    if num_layers == 1:
        nodes.append({"id": "flatten", "op": "flatten"})
    else:
        nodes += [{"id": "last", "op": "slice", "dim": 1, "start": num_layers - 1, "end": num_layers},
                  {"id": "flatten", "op": "flatten"}]
    nodes += _head(dropout_p)
    return {"input_shape": INPUT_SHAPE, "nodes": nodes}


def gru_attention_spec(hidden_size: int = GRU_HIDDEN, attention_size: int = ATTENTION_SIZE, num_layers: int = 1,
                       dropout_p: float | None = None) -> dict[str, Any]:
    """Row by row into a GRU, attention pooling over its outputs at every row, then classified::

        (1, 28, 28) -> rows: reshape (28, 28) -> gru (hidden_size, output "sequence"): (28, H)
        -> attention: sequence_attention (additive, attention_size): weights over the 28 rows, sum -> (H)
        -> [dropout] -> fc 10

    The shipped ``digits_gru_attention`` has one layer and no dropout; the lab's ``num_layers`` and
    ``dropout_p`` work as in :func:`lstm_spec` (the attention reads the top layer).
    """
    nodes: list[Node] = [
        _rows(),
        _recurrent("gru", "gru", hidden_size, "sequence", num_layers, dropout_p),
        {"id": "attention", "op": "sequence_attention", "score": "additive", "attention_size": attention_size},
        *_head(dropout_p),
    ]
    return {"input_shape": INPUT_SHAPE, "nodes": nodes}


#: how scripts/train_digits.py trains each shipped model from scratch (on the 8,000 training digits)
RECIPES: dict[str, TrainConfig] = {
    LSTM_ID: TrainConfig(epochs=12, batch_size=32, optimizer="adam", lr=2e-3, lr_schedule="cosine",
                         augment_shift=2, seed=0),
    GRU_ATTENTION_ID: TrainConfig(epochs=20, batch_size=32, optimizer="adam", lr=2e-3, lr_schedule="cosine",
                                  augment_shift=2, seed=0),
}

SPECS = {LSTM_ID: lstm_spec, GRU_ATTENTION_ID: gru_attention_spec}


def load_lstm() -> ModelBundle:
    """The shipped LSTM with its trained weights."""
    return shipped_bundle(
        LSTM_ID, lstm_spec(), "LSTM reading the digit row by row",
        f"A recurrent network: an LSTM ({LSTM_HIDDEN} hidden units) reads the 28 rows of the digit "
        "from top to bottom, one row of 28 pixels per step, carrying a memory from row to row; its "
        "final hidden state is classified by a fully connected layer (10).",
    )


def load_gru_attention() -> ModelBundle:
    """The shipped GRU with attention over the rows, with its trained weights."""
    return shipped_bundle(
        GRU_ATTENTION_ID, gru_attention_spec(), "GRU with attention over the rows",
        f"A recurrent network: a GRU ({GRU_HIDDEN} hidden units) reads the digit row by row; attention "
        "gives each row's output a weight (softmax over the 28 rows, summing to 1) and their weighted "
        "sum is classified by a fully connected layer (10). The weights show which rows mattered.",
        attention_node="attention",  # its recording's weights over the rows are the learned attention
    )
