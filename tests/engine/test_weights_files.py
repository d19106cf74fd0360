"""Weights files: written uncompressed and 64-byte aligned, read back bit for bit as read-only views of one mapping
of the file; any other ``.npz`` (the compressed ones stored before, ``np.savez``'s) still reads; nothing is ever
unpickled, and a damaged file is a WeightsError saying so."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from engine.errors import WeightsError
from engine.models.aligned_npz import ALIGN, is_mapped, load_mapped, save_aligned
from engine.models.weights import read_weights, save_weights


def random_params(rng: np.random.Generator, count: int = 30) -> dict[str, np.ndarray]:
    """Names of every length (the zip header's size varies with them), shapes of 0 to 4 axes, some empty, and
    float32 values with awkward bits: -0.0, subnormals, the largest finite, a NaN payload."""
    params = {}
    for i in range(count):
        shape = tuple(int(n) for n in rng.integers(1, 6, size=rng.integers(0, 5)))
        value = rng.standard_normal(shape).astype(np.float32)
        params[f"node_{i}{'x' * int(rng.integers(0, 70))}.weight"] = value
    params["odd.bits"] = np.array([-0.0, 1e-45, 3.4028235e38, np.inf, -np.inf], np.float32)
    params["odd.nan"] = np.array([0x7FC00001, 0xFFBADBAD], np.uint32).view(np.float32)
    params["empty.weight"] = np.zeros((0, 3), np.float32)
    params["ünïcode.bias"] = rng.standard_normal(7).astype(np.float32)
    return params


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("seed", range(5))
def test_weights_round_trip_bit_for_bit_and_are_mapped(tmp_path, seed):
    params = random_params(np.random.default_rng(seed))
    save_weights(tmp_path / "w.npz", params)
    back = read_weights(tmp_path / "w.npz")
    assert list(back) == list(params)
    for name, value in params.items():
        mine = back[name]
        assert mine.dtype == np.float32 and mine.shape == value.shape, name
        assert np.array_equal(bits(mine), bits(value)), f"{name}: read back {mine} vs written {value}"
        if value.size:
            assert is_mapped(mine), f"{name} was copied, not mapped"
            assert mine.ctypes.data % ALIGN == 0, f"{name} starts at {mine.ctypes.data % ALIGN} past a boundary"
            assert not mine.flags.writeable  # a shared page of the file: nobody may change it in place
    assert all(info.compress_type == zipfile.ZIP_STORED for info in zipfile.ZipFile(tmp_path / "w.npz").infolist())


@pytest.mark.parametrize("seed", range(3))
def test_the_file_is_an_ordinary_npz_that_numpy_reads(tmp_path, seed):
    params = random_params(np.random.default_rng(seed))
    save_weights(tmp_path / "w.npz", params)
    assert zipfile.ZipFile(tmp_path / "w.npz").testzip() is None  # every member's CRC is right
    with np.load(tmp_path / "w.npz", allow_pickle=False) as theirs:
        assert theirs.files == list(params)
        for name, value in params.items():
            assert np.array_equal(bits(theirs[name]), bits(value)), f"np.load {theirs[name]} vs written {value}"


def test_other_dtypes_and_orders_keep_theirs(tmp_path):
    """save_aligned itself stores any numeric array as it is (save_weights makes them float32 first)."""
    rng = np.random.default_rng(7)
    arrays = {"f64": rng.standard_normal((3, 5)), "i8": np.arange(-5, 5, dtype=np.int8),
              "fortran": np.asfortranarray(rng.standard_normal((4, 6)).astype(np.float32)),
              "scalar": np.array(2.5, np.float32), "big_endian": np.arange(6, dtype=">f4").reshape(2, 3)}
    save_aligned(tmp_path / "a.npz", arrays)
    back = load_mapped(tmp_path / "a.npz")
    for name, value in arrays.items():
        assert back[name].shape == value.shape and np.array_equal(back[name], value), f"{name}: {back[name]}"
        assert back[name].dtype.newbyteorder("=") == value.dtype.newbyteorder("="), name


def test_compressed_npz_written_before_still_reads(tmp_path):
    """Models stored before this change hold np.savez_compressed files: same arrays, in memory (not mapped)."""
    params = random_params(np.random.default_rng(11))
    np.savez_compressed(tmp_path / "old.npz", **params)
    back = read_weights(tmp_path / "old.npz")
    assert list(back) == list(params)
    for name, value in params.items():
        assert np.array_equal(bits(back[name]), bits(value)), f"{name}: read {back[name]} vs written {value}"
        assert not is_mapped(back[name])  # the control: a decompressed array is a copy in memory


def test_np_savez_files_read_mapped_where_aligned_and_copied_where_not(tmp_path):
    params = random_params(np.random.default_rng(12))
    np.savez(tmp_path / "plain.npz", **params)
    back = read_weights(tmp_path / "plain.npz")
    for name, value in params.items():
        assert np.array_equal(bits(back[name]), bits(value)), name
        if is_mapped(back[name]):
            assert back[name].ctypes.data % ALIGN == 0, f"{name} was mapped unaligned"
    assert not all(is_mapped(v) for v in back.values() if v.size)  # np.savez does not align: some are copies


def test_float64_weights_are_converted(tmp_path):
    np.savez(tmp_path / "f64.npz", w=np.linspace(0, 1, 9).reshape(3, 3))
    back = read_weights(tmp_path / "f64.npz")["w"]
    assert back.dtype == np.float32 and np.array_equal(back, np.linspace(0, 1, 9, dtype=np.float32).reshape(3, 3))


def test_a_mapped_model_survives_its_file_being_replaced_or_deleted(tmp_path):
    """The store replaces (rename) and deletes (unlink) weights files, never writes into one: a worker that mapped
    the old file keeps reading the old values."""
    path = tmp_path / "w.npz"
    save_weights(path, {"w": np.full((64, 64), 1.5, np.float32)})
    mapped = read_weights(path)["w"]
    save_weights(tmp_path / "new.npz", {"w": np.full((64, 64), -2.0, np.float32)})
    os.replace(tmp_path / "new.npz", path)
    assert float(mapped.sum()) == 1.5 * 64 * 64
    assert float(read_weights(path)["w"][0, 0]) == -2.0
    path.unlink()
    assert float(mapped.sum()) == 1.5 * 64 * 64


def test_an_object_array_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo unpickled > /dev/null",))

    path = tmp_path / "evil.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array([Boom()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("w.npy", buffer.getvalue())
    with pytest.raises(WeightsError, match="Python objects"):
        read_weights(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # the compressed path refuses it too
        archive.writestr("w.npy", buffer.getvalue())
    with pytest.raises(WeightsError, match="pickle"):
        read_weights(path)
    with pytest.raises(ValueError, match="Python objects"):
        save_aligned(tmp_path / "no.npz", {"w": np.array([Boom()], dtype=object)})


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_a_weights_error(tmp_path, keep):
    path = tmp_path / "w.npz"
    save_weights(path, random_params(np.random.default_rng(3)))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(WeightsError, match="truncated or damaged"):
        read_weights(path)


def test_a_member_whose_header_disagrees_with_its_size_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, {"w": np.zeros((8, 8), np.float32)})
    data = path.read_bytes()
    lied = data.replace(b"'shape': (8, 8)", b"'shape': (9, 8)")
    assert lied != data
    path.write_bytes(lied)
    with pytest.raises(WeightsError, match="damaged"):
        read_weights(path)


def test_a_member_that_is_not_npy_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("w.npy", b"this is not an array")
    with pytest.raises(WeightsError, match=r"cannot read weights from w\.npz"):
        read_weights(path)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(WeightsError, match="there is no such file"):
        read_weights(tmp_path / "nothing.npz")
