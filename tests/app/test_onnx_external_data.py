"""An uploaded ONNX file may not make the server read any other file.

A tensor can say its values live in another file ("external data"), read relative to the working directory: a
200-byte upload naming ``README.md`` used to be imported with that file's bytes as its weights, and an absolute
path, ``../``, a symlink or a missing file raised an uncaught ``ValidationError`` (a 500 that told whether the file
existed). Every place a tensor can sit is tried with every kind of location; each is refused naming the node, with
the same answer whether the file exists or not, and no file is opened while importing.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.importers import OnnxImportError, import_onnx
from app.importers.onnx_safety import external_tensors, tensor_array

SECRET = b"top secret bytes, 32 of them....!"


def external(name: str, location: str, length: int = 16, default_location: bool = False) -> TensorProto:
    """A float tensor of ``length / 4`` values said to be stored in ``location``."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[length // 4])
    if not default_location:
        tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def model_with(nodes, initializers=(), sparse=(), functions=(), training=None, opset: int = 13) -> bytes:
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(initializers),
                              sparse_initializer=list(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("local", 1)], functions=list(functions))
    if training is not None:
        model.training_info.append(training)
    model.ir_version = 8
    return model.SerializeToString()


def add(other: str = "c") -> onnx.NodeProto:
    return helper.make_node("Add", ["x", other], ["y"], name="add")


def sparse_tensor(values: TensorProto) -> onnx.SparseTensorProto:
    indices = numpy_helper.from_array(np.array([0], np.int64), "idx")
    return helper.make_sparse_tensor(values, indices, [4])


def subgraph_with_constant(location: str) -> onnx.GraphProto:
    inner = helper.make_node("Constant", [], ["inner_c"], name="inner_leak", value=external("v", location))
    return helper.make_graph([inner], "branch", [], [helper.make_tensor_value_info("inner_c", TensorProto.FLOAT,
                                                                                     [4])])


#: place -> (model for a location, the words naming where the tensor sits)
PLACES = {
    "initializer": (lambda loc: model_with([add("w")], [external("w", loc)]), "initializer 'w'"),
    "Constant value": (lambda loc: model_with([helper.make_node("Constant", [], ["c"], name="leak",
                                                                value=external("v", loc)), add()]),
                       "Constant node 'leak', attribute 'value'"),
    "ConstantOfShape value": (lambda loc: model_with(
        [helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill", value=external("v", loc, length=4)), add()],
        [numpy_helper.from_array(np.array([1, 4], np.int64), "s")]), "ConstantOfShape node 'fill', attribute 'value'"),
    "sparse initializer": (lambda loc: model_with([add("sp")], sparse=[sparse_tensor(external("sp", loc))]),
                           "sparse initializer 'sp'"),
    "Constant sparse_value": (lambda loc: model_with(
        [helper.make_node("Constant", [], ["c"], name="sparse_leak", sparse_value=sparse_tensor(external("v", loc))),
         add()]), "Constant node 'sparse_leak', attribute 'sparse_value'"),
    "tensors attribute": (lambda loc: model_with(
        [helper.make_node("Add", ["x", "x"], ["y"], name="tagged", extra=[external("t0", loc)])]),
        "Add node 'tagged', attribute 'extra'[0]"),
    "If subgraph": (lambda loc: model_with(
        [helper.make_node("Constant", [], ["cond"], name="cond", value=numpy_helper.from_array(np.array(True))),
         helper.make_node("If", ["cond"], ["c"], name="branch", then_branch=subgraph_with_constant(loc),
                          else_branch=subgraph_with_constant(loc)), add()]),
        "If node 'branch', attribute 'then_branch' (subgraph 'branch'): Constant node 'inner_leak'"),
    "local function": (lambda loc: model_with(
        [helper.make_node("Leaky", ["x"], ["y"], name="call", domain="local")],
        functions=[helper.make_function("local", "Leaky", ["a"], ["b"], [
            helper.make_node("Constant", [], ["k"], name="fn_leak", value=external("v", loc)),
            helper.make_node("Add", ["a", "k"], ["b"])], [helper.make_opsetid("", 13)])]),
        "function 'Leaky': Constant node 'fn_leak'"),
    "training initialization graph": (lambda loc: model_with(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        training=onnx.TrainingInfoProto(initialization=subgraph_with_constant(loc))),
        "training_info[0] initialization: Constant node 'inner_leak'"),
}


@pytest.fixture
def files(tmp_path, monkeypatch) -> dict[str, str]:
    """A working directory holding a secret file (and a symlink to one outside it): location kind -> location."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "secret.bin").write_bytes(SECRET)
    (outside / "other.bin").write_bytes(SECRET)
    (work / "link.bin").symlink_to(outside / "other.bin")
    monkeypatch.chdir(work)
    return {"relative, existing": "secret.bin", "absolute": str(outside / "other.bin"),
            "parent directory": "../outside/other.bin", "symlink": "link.bin", "missing": "missing.bin"}


class OpenedFiles:
    """Every file Python opens while importing (``open`` and ``os.open`` raise audit events)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.active = False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str | bytes):
            self.paths.append(os.fsdecode(args[0]))


OPENED = OpenedFiles()  # audit hooks cannot be removed: one for the module, switched on around each import


@pytest.mark.parametrize("place", PLACES)
def test_external_data_anywhere_is_refused_the_same_way_wherever_it_points(place, files):
    build, where = PLACES[place]
    answers = {}
    for kind, location in files.items():
        OPENED.paths.clear()
        OPENED.active = True
        try:
            with pytest.raises(OnnxImportError) as caught:
                import_onnx(build(location))
        finally:
            OPENED.active = False
        message = str(caught.value)
        assert "external data" in message and where in message, (kind, message)
        assert "save_as_external_data=False" in message
        assert location not in message  # the answer never echoes (or depends on) the path
        assert not [p for p in OPENED.paths if "secret" in p or "other" in p or "missing" in p or "link" in p], \
            OPENED.paths
        answers[kind] = message
    assert len(set(answers.values())) == 1, answers  # existing or missing, inside or out: one answer, no oracle


def test_a_location_in_external_data_is_refused_even_when_data_location_says_default(files):
    hostile = model_with([add("w")], [external("w", "secret.bin", default_location=True)])
    with pytest.raises(OnnxImportError, match="initializer 'w'"):
        import_onnx(hostile)


def test_the_old_import_read_the_file_the_model_named(files, monkeypatch):
    """Negative control: with the check switched off, the relative path is read from the working directory (the
    leak this file guards against), so the tests above are testing something real."""
    monkeypatch.setattr("app.importers.onnx_import.external_tensors", lambda model: [])
    monkeypatch.setattr("app.importers.onnx_import.tensor_array", numpy_helper.to_array)
    _, params, _ = import_onnx(model_with([add("w")], [external("w", "secret.bin")]))
    leaked = next(iter(params.values()))
    assert leaked.tobytes() == SECRET[:16]


def test_tensor_array_refuses_external_data_and_reads_ordinary_tensors():
    with pytest.raises(ValueError, match="separate file"):
        tensor_array(external("w", "secret.bin"))
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(tensor_array(numpy_helper.from_array(value, "ok")), value)
    broken = numpy_helper.from_array(value, "broken")
    broken.dims[:] = [4, 3]  # 12 values declared, 6 stored
    with pytest.raises(ValueError, match="tensor 'broken' cannot be read"):
        tensor_array(broken)


def test_a_model_that_holds_all_its_values_has_no_external_tensors():
    ordinary = onnx.load_model_from_string(model_with([add("w")], [numpy_helper.from_array(np.ones(4, np.float32),
                                                                                             "w")]))
    assert external_tensors(ordinary) == []
    _, params, _ = import_onnx(ordinary.SerializeToString())
    assert [p.tolist() for p in params.values()] == [[1.0, 1.0, 1.0, 1.0]]


def test_random_damage_to_a_model_is_an_import_error_or_an_import_never_a_crash():
    """Bytes flipped, cut or repeated anywhere in a real model: the import answers with ``OnnxImportError`` (a 422
    over the API) or imports; no other exception escapes from the ONNX library or the converters."""
    from tests.app.onnx_models import Builder

    builder = Builder([1, 1, 8, 8])
    h = builder.node("Conv", ["x", builder.weight((2, 1, 3, 3)), builder.weight((2,))], pads=[1, 1, 1, 1])
    h = builder.node("Relu", [h])
    h = builder.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = builder.node("Flatten", [h])
    good = builder.build(builder.node("Gemm", [h, builder.weight((3, 32)), builder.weight((3,))], transB=1))
    rng = np.random.default_rng(0)
    outcomes = {"imported": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(data)))
            action = rng.integers(0, 3)
            if action == 0:
                data[at] = int(rng.integers(0, 256))
            elif action == 1:
                del data[at:at + int(rng.integers(1, 16))]
            else:
                data[at:at] = data[max(0, at - 8):at]
        try:
            import_onnx(bytes(data))
            outcomes["imported"] += 1
        except OnnxImportError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and outcomes["imported"] > 0, outcomes
