"""What an uploaded ONNX file must pass before the import reads it: its own bytes only, and text that is text.

No tensor may point at "external data".

ONNX lets a tensor keep its values in another file (``data_location = EXTERNAL`` with a ``location`` such as
``weights.bin``), read relative to a base directory when the tensor is converted. On a server that base is the
working directory, so a 200-byte upload naming ``.git/config`` or another user's stored run would make the
server read that file and serve its bytes back as weights; an absolute path, ``../``, a symlink or a missing
file make the ONNX library raise, which says whether the file exists. Such tensors can sit anywhere a tensor
can: initializers, sparse initializers, node attributes (``Constant``'s ``value``, ``ConstantOfShape``'s
``value``, any ``tensors`` list), graphs nested in attributes (``If``, ``Loop``, ``Scan``), local functions and
training graphs. :func:`external_tensors` finds every one of them before anything converts a tensor, and
:func:`tensor_array` converts one tensor without ever touching the filesystem.

ONNX's protobuf schema (proto2) does not check that names are UTF-8: a damaged file decodes with ``bytes`` where
a node name or operator type should be ``str``. :func:`first_undecodable_text` finds such a field so the import
refuses the file instead of failing deep inside.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper


def refers_to_external_data(tensor: onnx.TensorProto) -> bool:
    """True when ``tensor`` says its values live in another file (either field is enough to be refused)."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"{node.op_type} node '{node.name or f'#{index}'}'"


def _attribute_tensors(attr: onnx.AttributeProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """``(what, tensor)`` for every tensor held in one attribute, nested graphs excluded."""
    if attr.HasField("t"):
        yield f"attribute '{attr.name}'", attr.t
    for i, tensor in enumerate(attr.tensors):
        yield f"attribute '{attr.name}'[{i}]", tensor
    if attr.HasField("sparse_tensor"):
        yield f"attribute '{attr.name}' (values)", attr.sparse_tensor.values
        yield f"attribute '{attr.name}' (indices)", attr.sparse_tensor.indices
    for i, sparse in enumerate(attr.sparse_tensors):
        yield f"attribute '{attr.name}'[{i}] (values)", sparse.values
        yield f"attribute '{attr.name}'[{i}] (indices)", sparse.indices


def _attribute_graphs(attr: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attr.HasField("g"):
        yield attr.g
    yield from attr.graphs


def _node_tensors(nodes, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for index, node in enumerate(nodes):
        label = f"{where}{_node_label(node, index)}"
        for attr in node.attribute:
            for what, tensor in _attribute_tensors(attr):
                yield f"{label}, {what}", tensor
            for graph in _attribute_graphs(attr):
                yield from _graph_tensors(graph, f"{label}, attribute '{attr.name}' (subgraph '{graph.name}'): ")


def _graph_tensors(graph: onnx.GraphProto, where: str = "") -> Iterator[tuple[str, onnx.TensorProto]]:
    """``(where, tensor)`` for every tensor in ``graph`` and the graphs nested in its nodes."""
    for tensor in graph.initializer:
        yield f"{where}initializer '{tensor.name}'", tensor
    for sparse in graph.sparse_initializer:
        yield f"{where}sparse initializer '{sparse.values.name}' (values)", sparse.values
        yield f"{where}sparse initializer '{sparse.values.name}' (indices)", sparse.indices
    yield from _node_tensors(graph.node, where)


def all_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """``(where, tensor)`` for every tensor a model holds, saying where it sits in the user's terms."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node, f"function '{function.name}': ")
    for i, info in enumerate(model.training_info):
        yield from _graph_tensors(info.initialization, f"training_info[{i}] initialization: ")
        yield from _graph_tensors(info.algorithm, f"training_info[{i}] algorithm: ")


def external_tensors(model: onnx.ModelProto) -> list[str]:
    """Where every tensor that refers to external data sits (empty when the file holds all its values)."""
    return [where for where, tensor in all_tensors(model) if refers_to_external_data(tensor)]


def tensor_array(tensor: onnx.TensorProto) -> np.ndarray:
    """``tensor``'s values as an array, read from the model's own bytes only.

    Raises ``ValueError`` for a tensor that refers to external data (the import refuses those earlier; this is the
    second lock on the same door) or whose stored values do not match its declared type and shape.
    """
    if refers_to_external_data(tensor):
        raise ValueError(f"tensor '{tensor.name}' keeps its values in a separate file, which this server never reads")
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as error:  # e.g. fewer values stored than its shape declares
        raise ValueError(f"tensor '{tensor.name}' cannot be read ({error})") from None
    except Exception as error:  # whatever else the ONNX library raises on a damaged tensor: no internals echoed
        kind = type(error).__name__
        raise ValueError(f"tensor '{tensor.name}' cannot be read (its data is damaged: {kind})") from None


def first_undecodable_text(message) -> str | None:
    """The name of the first text field in ``message`` (or a message nested in it) that is not valid UTF-8.

    Only text and message fields are read: ``ListFields()`` would also hand back every bytes field as a new Python
    bytes object, i.e. copy each tensor's ``raw_data`` (400 MiB for VGG-16's largest) just to skip it."""
    for field in message.DESCRIPTOR.fields:
        if field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
            continue
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if not repeated and getattr(field, "has_presence", True) and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if field.type == field.TYPE_STRING:
            if any(isinstance(text, bytes) for text in (value if repeated else [value])):
                return field.name
        else:
            for inner in value if repeated else [value]:
                found = first_undecodable_text(inner)
                if found is not None:
                    return found
    return None
