"""The "main layers" view of a graph: which column shows each node when a big network is drawn compactly.

A convolution, the batch norm after it and the activation after that are one step of the network as a lecture tells
it, so they share one column, shown under the id of the last of them. The rule, by each op's ``main_view``
(``engine.ops.base.MainView``), for a node with exactly one consumer:

* a "convolution" folds into that consumer when it is a "normalisation" or an "activation";
* a "normalisation" or "pass_through" node (batch norm, dropout, identity) folds into that consumer when it is an
  "activation", a "normalisation" or a "pass_through" node.

A folded node is shown in the column of the node it folds into (and so on down the chain). "hidden" nodes
(constants) have no column. The graph's input and its output node always have a column of their own; so does every
other node.
"""

from __future__ import annotations

from engine.graph import Graph
from engine.ops.base import MainView

#: a node whose op has the key's part folds into its only consumer when that consumer's op has one of these parts
FOLDS_INTO: dict[MainView, frozenset[MainView]] = {
    "convolution": frozenset({"normalisation", "activation"}),
    "normalisation": frozenset({"activation", "normalisation", "pass_through"}),
    "pass_through": frozenset({"activation", "normalisation", "pass_through"}),
}


def main_columns(graph: Graph) -> dict[str, str | None]:
    """Per node id (graph order; not the input, which is always its own column): the id of the node whose column
    shows it in the main layers view, itself when it has a column of its own; None for a hidden node (a constant).

    A node folded into another always has exactly one consumer, so every column is a chain: the nodes that share a
    column are, in graph order, a path ending at the node that names the column.
    """
    columns: dict[str, str | None] = {}
    for node in reversed(graph.nodes):  # a consumer comes after what it reads: its column is known first
        view = node.op.main_view
        readers = graph.consumers[node.id]
        if node.id == graph.output_id:
            columns[node.id] = node.id
        elif view == "hidden":
            columns[node.id] = None
        elif (len(readers) == 1 and view in FOLDS_INTO
              and graph.node(readers[0]).op.main_view in FOLDS_INTO[view]):
            columns[node.id] = columns[readers[0]]
        else:
            columns[node.id] = node.id
    return {node.id: columns[node.id] for node in graph.nodes}
