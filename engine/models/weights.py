"""Weights on disk: a ``.npz`` of named float arrays, ``"<node id>.<name>"``, checked against the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import WeightsError
from engine.graph import Graph


def save_weights(path: str | Path, params: dict[str, np.ndarray]) -> None:
    """Write ``params`` as a compressed ``.npz`` (float32)."""
    np.savez_compressed(path, **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()})


def load_weights(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    """Read a ``.npz`` (never a pickle) and check every name and shape against ``graph``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            params = {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in data.files}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights from {Path(path).name}: {exc}") from exc
    graph.check_params(params)
    return params
