"""Weights on disk: a ``.npz`` of named float arrays, ``"<node id>.<name>"``, checked against the graph.

Written uncompressed with every array 64-byte aligned (``engine.models.aligned_npz``), so reading maps the file
instead of copying it; any ``.npz`` reads, the compressed ones written before included.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from engine.errors import WeightsError
from engine.graph import Graph
from engine.models.aligned_npz import load_mapped, save_aligned


def save_weights(path: str | Path, params: dict[str, np.ndarray]) -> None:
    """Write ``params`` as an uncompressed, memory-mappable ``.npz`` (float32)."""
    save_aligned(path, {k: np.asarray(v, dtype=np.float32) for k, v in params.items()})


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``.npz`` (never a pickle) as float32 arrays, unchecked; WeightsError when it cannot be read.

    Arrays written by :func:`save_weights` come back as read-only views of the mapped file (shared by every
    process that maps it; copy one before changing it); others (a compressed ``.npz``, a float64 one) are read
    into memory. A truncated or damaged file is a WeightsError too (NumPy reports it as a
    ``zipfile.BadZipFile``, a ``zlib.error`` or an ``EOFError``, none of them an ``OSError``).
    """
    name = Path(path).name
    try:
        return {k: np.asarray(v, dtype=np.float32, order="C") for k, v in load_mapped(path).items()}
    except FileNotFoundError as exc:
        raise WeightsError(f"cannot read weights from {name}: there is no such file") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise WeightsError(f"cannot read weights from {name}: the file is truncated or damaged ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights from {name}: {exc}") from exc


def load_weights(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    """Read a ``.npz`` (never a pickle) and check every name and shape against ``graph``."""
    params = read_weights(path)
    graph.check_params(params)
    return params
