"""Shared fixtures. Tests that compare with PyTorch use ``torch_or_skip`` and skip cleanly without it; tests that
need Redis use ``redis_url`` (or ``fresh_redis``) and skip cleanly without redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.redis_server import flush, running_redis


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def torch_or_skip():
    """The torch module, single-threaded, or a skip where it is not installed (it is a reference only)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: reference comparisons skipped")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real redis-server started for this test session (no persistence, a temporary directory),
    stopped at the end; skips where redis-server is not installed. Tests share it: use ``fresh_redis`` for an
    empty one."""
    with running_redis() as url:
        yield url


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """``redis_url``, emptied before the test (FLUSHALL)."""
    flush(redis_url)
    return redis_url
