"""The content-addressed .npy store behind adversarial examples' links: names from content, bounded, 404 after."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from app.errors import ApiError
from app.services.tensor_files import TensorFiles


def load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def test_round_trip_keeps_dtype_and_equal_content_shares_a_name(tmp_path):
    files = TensorFiles(tmp_path)
    exact = np.array([0.2, -0.2, 0.1], dtype=np.float64)
    name = files.save(exact)
    assert len(name) == 32 and files.save(exact.copy()) == name
    back = load(files.read(name))
    assert back.dtype == np.float64 and np.array_equal(back, exact)
    assert files.save(exact.astype(np.float32)) != name


def test_oldest_files_go_beyond_the_count(tmp_path):
    files = TensorFiles(tmp_path, max_files=3, how_to_remake="ask again")
    names = []
    for i in range(5):
        names.append(files.save(np.full(4, i, dtype=np.float32)))
        os.utime(tmp_path / f"{names[-1]}.npy", (1000 + i, 1000 + i))  # distinct ages on a coarse clock
    files.save(np.full(4, 9, dtype=np.float32))  # prunes, now that the ages are set
    assert len(list(tmp_path.glob("*.npy"))) == 3
    with pytest.raises(ApiError, match=r"expired .*ask again") as refused:
        files.read(names[0])
    assert refused.value.status_code == 404
    assert load(files.read(names[4]))[0] == 4


def test_bytes_bound_keeps_the_newest(tmp_path):
    files = TensorFiles(tmp_path, max_files=100, max_bytes=1000)
    big = [files.save(np.full(100, i, dtype=np.float32)) for i in range(3)]  # about 528 bytes each
    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert load(files.read(big[-1]))[0] == 2


@pytest.mark.parametrize("name", ["../etc/passwd", "0" * 31, "G" * 32, ""])
def test_refuses_names_it_never_gives(tmp_path, name):
    with pytest.raises(ApiError, match="not a tensor name"):
        TensorFiles(tmp_path).read(name)
