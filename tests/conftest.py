"""Shared fixtures. Tests that compare with PyTorch use ``torch_or_skip`` and skip cleanly without it; tests that
need Redis use ``redis_url`` (or ``fresh_redis``) and skip cleanly without redis-server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """When this session runs the zoo's import tests (tests/app/test_onnx_zoo.py), export their architectures in a
    background process meanwhile (tests/app/zoo_exports.py says why and how)."""
    for item in items:  # under pytest-xdist (-n 2 --dist loadgroup), one worker runs every browser test in order
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("browser"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the other worker exports meanwhile: no background process (each worker would start one)
    cases = [(item.callspec.params["name"], item.callspec.params["exporter"]) for item in items
             if item.path.name == "test_onnx_zoo.py" and hasattr(item, "callspec")
             and {"name", "exporter"} <= item.callspec.params.keys()]
    if not cases or any(importlib.util.find_spec(m) is None for m in ("torch", "onnxruntime")):
        return
    from tests.app import torch_zoo

    directory = Path(tempfile.mkdtemp(prefix="zoo-exports-"))
    config.stash[ZOO_EXPORTS] = directory
    torch_zoo.export_in_background(list(dict.fromkeys(cases)), directory)


ZOO_EXPORTS = pytest.StashKey[Path]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    directory = session.config.stash.get(ZOO_EXPORTS, None)
    if directory is not None:
        from tests.app import torch_zoo

        torch_zoo.stop_background()
        shutil.rmtree(directory, ignore_errors=True)
