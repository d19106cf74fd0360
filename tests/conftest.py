"""Shared fixtures. Tests that compare with PyTorch use ``torch_or_skip`` and skip cleanly without it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def torch_or_skip():
    """The torch module, single-threaded, or a skip where it is not installed (it is a reference only)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: reference comparisons skipped")
    torch.set_num_threads(1)
    return torch
