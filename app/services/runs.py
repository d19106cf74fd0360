"""Runs: one forward pass of one model on one input, content-addressed and cached.

A run's id is a hash of the model id, the model's version (a fingerprint of its weights) and the
preprocessed input tensor. The input itself is kept on disk under ``<data dir>/runs/`` (bounded,
oldest removed first), so any worker process can recompute a run it has never seen, and a
restarted server still answers old links. Activations are kept in a per-process LRU bounded by
entry count and bytes, so memory stays flat however many runs are made; each run also keeps the
feature-map PNGs it has encoded (counted in those bytes), so a class opening the same picture encodes
each map once. A disk that refuses to store an input (full, read-only) only costs that: the run is
answered and kept in this worker's memory, and a warning is logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.errors import ApiError, shorten
from app.services.compute import forward_gmacs, unbounded
from app.services.models import ModelStore, StoredModel
from app.services.shared_runs import SharedRuns
from app.services.single_flight import KeyedLocks
from app.services.tiles import Scale, as_channels, render_png
from engine.errors import UnknownNodeError
from engine.graph import INPUT
from engine.time_steps import time_axes

RUN_ID_LENGTH = 32
#: the work of a recording pass (it keeps every activation) in forward passes, for the compute slots' queue: on
#: EfficientNet-Lite0 it took 65 ms against 40 ms for a pass that keeps nothing (a prediction), and sharing the
#: run with the other workers 27 ms more
RECORDING_WORK = 2.0
#: a worker that serves a shared run from its cache marks the run's file as used at most this often
SHARED_TOUCH_S = 1.0

log = logging.getLogger("cnn_visualiser.runs")


@dataclass
class Run:
    """Every node's activation for one input (batch of one), plus statistics and PNGs computed once."""

    run_id: str
    model_id: str
    version: str
    activations: dict[str, np.ndarray]
    elapsed_ms: float
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    pngs: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)  # (node, scale): PNG, layout
    png_bytes: int = 0  # of the PNGs kept, updated as they are added
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # node: each tile's min, max
    used_at: float = field(default_factory=time.monotonic)  # when a request last used it (RunStore.forget_unused)
    touched_at: float = field(default_factory=time.monotonic)  # when its shared file was last marked as used
    time_axes: dict[str, int] = field(default_factory=dict)  # node: its time axis (engine.time_steps.time_axes)
    activation_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.activation_bytes = sum(a.nbytes for a in self.activations.values())

    @property
    def nbytes(self) -> int:
        return self.activation_bytes + self.png_bytes

    @property
    def input(self) -> np.ndarray:
        return self.activations[INPUT]


def activation_of(run: Run, node_id: str) -> np.ndarray:
    """The run's activation at ``node_id`` ('input' included); ``UnknownNodeError`` listing the run's nodes."""
    activation = run.activations.get(node_id)
    if activation is None:
        raise UnknownNodeError(node_id, list(run.activations))
    return activation


def node_op(graph, node_id: str) -> str:
    """The node's op name, or 'input' for the input."""
    return "input" if node_id == INPUT else graph.node(node_id).op.op


def make_run_id(model: StoredModel, x: np.ndarray) -> str:
    """Hash of model id, model version and the preprocessed input (float32 bytes and shape)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    digest = hashlib.sha256(f"{model.id}\0{model.version}\0{list(x.shape)}\0".encode())
    digest.update(x.tobytes())
    return digest.hexdigest()[:RUN_ID_LENGTH]


def activation_stats(a: np.ndarray, low: float | None = None, high: float | None = None) -> dict[str, float]:
    """min, max, mean, std and the share of exact zeros, for display (``low`` and ``high``: min and max, when
    they are known already).

    Float32 throughout (pairwise sum, BLAS dot for the centred squares): twice as fast as float64
    accumulation over EfficientNet's 20 M activation values, std within 3e-5 relative of it.
    """
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    n = flat.size
    if low is None or high is None:
        low, high = float(flat.min()), float(flat.max())
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(flat.sum()) / n
        centred = flat - np.float32(mean)
        std = (float(centred @ centred) / n) ** 0.5
    if not (math.isfinite(mean) and math.isfinite(std)) and math.isfinite(low) and math.isfinite(high):
        # finite values whose sum or squares pass float32's 3.4e38: accumulate in float64 instead
        wide = flat.astype(np.float64)
        mean = float(wide.mean())
        std = float(np.sqrt(np.mean((wide - mean) ** 2)))
    return {"min": low, "max": high, "mean": mean, "std": std,
            "zero_fraction": int(np.count_nonzero(flat == 0)) / n}  # 3x faster than counting float non-zeros


class RunStore:
    """Runs in memory (LRU, at most ``max_runs`` and ``max_bytes``) and their inputs on disk (``max_files``)."""

    def __init__(self, directory: Path, max_runs: int = 8, max_bytes: int = 512 * 1024 * 1024,
                 max_files: int = 500, compute: Callable[..., AbstractContextManager[None]] = unbounded,
                 shared: SharedRuns | None = None) -> None:
        self.directory = Path(directory)
        self.shared = shared  # several workers: activations in files every worker maps (app.services.shared_runs)
        self.compute = compute
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._flights = KeyedLocks()  # runs and PNGs being made: identical requests wait for the first
        self._lock = threading.Lock()
        self._disk_refused = False  # the last write failed: warn once, not on every run

    # --- memory ----------------------------------------------------------------------------------
    def _remember(self, run: Run) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            self._runs.move_to_end(run.run_id)
            run.used_at = time.monotonic()
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used runs until the rest fit (the newest always stays); hold ``_lock``."""
        total = sum(r.nbytes for r in self._runs.values())
        while len(self._runs) > 1 and (len(self._runs) > self.max_runs or total > self.max_bytes):
            _, dropped = self._runs.popitem(last=False)
            total -= dropped.nbytes

    def _cached(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            self._runs.move_to_end(run_id)
            run.used_at = now = time.monotonic()
            touch = self.shared is not None and now - run.touched_at >= SHARED_TOUCH_S
            if touch:
                run.touched_at = now
        if touch:  # tell the other workers' forget_unused that the run's file is still in use (at most once a second)
            self.shared.touch(run_id)
        return run

    def forget_unused(self, idle_s: float) -> int:
        """Drop the runs nobody used for ``idle_s`` seconds (a later request recomputes one from its stored input,
        or maps it again); returns how many. Called when the worker rests, so its memory falls back after a
        lecture's burst instead of holding ``max_bytes`` of runs until the next one."""
        cutoff = time.monotonic() - idle_s
        with self._lock:
            stale = [run_id for run_id, run in self._runs.items() if run.used_at <= cutoff]
            for run_id in stale:
                del self._runs[run_id]
        if self.shared is not None:  # and the shared files no worker opened meanwhile (memory in /dev/shm)
            self.shared.forget_unused(idle_s)
        return len(stale)

    def cached_count(self) -> int:
        with self._lock:
            return len(self._runs)

    # --- disk --------------------------------------------------------------------------------------
    def _path(self, run_id: str) -> Path:
        return self.directory / f"{run_id}.npz"

    def _save_input(self, run_id: str, model: StoredModel, x: np.ndarray) -> None:
        """Keep the input on disk; when the disk refuses, the run lives in this worker's memory only."""
        try:
            self._write_input(run_id, model, x)
        except OSError as exc:
            if not self._disk_refused:
                log.warning("cannot store run inputs in %s (%s): runs are kept in memory only, so other workers "
                            "and a restarted server cannot recompute them", self.directory, exc)
            self._disk_refused = True
        else:
            self._disk_refused = False

    def _write_input(self, run_id: str, model: StoredModel, x: np.ndarray) -> None:
        path = self._path(run_id)
        if path.exists():
            os.utime(path)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, x=x, model_id=np.array(model.id), version=np.array(model.version))
        handle, temporary = tempfile.mkstemp(prefix=".run-", dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(temporary, path)  # atomic: a worker reading it sees all or nothing
        except BaseException:
            Path(temporary).unlink(missing_ok=True)  # a full disk leaves no half-written file behind
            raise
        self._prune_disk()

    def _prune_disk(self) -> None:
        files = []
        for path in self.directory.glob("*.npz"):
            with contextlib.suppress(FileNotFoundError):  # pruned by another worker meanwhile
                files.append((path.stat().st_mtime, path))
        files.sort()
        for _, stale in files[: max(0, len(files) - self.max_files)]:
            stale.unlink(missing_ok=True)

    def _load_input(self, run_id: str) -> tuple[str, str, np.ndarray] | None:
        path = self._path(run_id)
        try:
            with np.load(path, allow_pickle=False) as data:
                return str(data["model_id"]), str(data["version"]), data["x"].astype(np.float32)
        except (OSError, KeyError, ValueError):
            return None

    # --- the API -----------------------------------------------------------------------------------
    def create(self, model: StoredModel, x: np.ndarray) -> tuple[Run, bool]:
        """The run of ``model`` on ``x: (1, *input_shape)`` and whether it came from the cache."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        run_id = make_run_id(model, x)
        run = self._cached(run_id)
        cached = run is not None
        if run is None:
            run = self._compute(run_id, model, x)
        self._save_input(run_id, model, x)
        return run, cached

    def _compute(self, run_id: str, model: StoredModel, x: np.ndarray) -> Run:
        """The run, computed once however many identical requests arrive together (single flight): the first
        computes it, the others wait and take it from the cache (after a failure, the next one tries again)."""
        with self._flights.hold(("run", run_id)):
            run = self._cached(run_id) or self._open_shared(run_id, model)
            return run if run is not None else self._forward(run_id, model, x)

    def _open_shared(self, run_id: str, model: StoredModel) -> Run | None:
        """The run as another worker computed it (None: no worker has shared it, or for another version)."""
        found = self.shared.open(run_id) if self.shared is not None else None
        if found is None or (found.model_id, found.version) != (model.id, model.version):
            return None
        run = Run(run_id, found.model_id, found.version, found.activations, found.elapsed_ms,
                  time_axes=time_axes(model.graph))
        self._remember(run)
        return run

    def _forward(self, run_id: str, model: StoredModel, x: np.ndarray) -> Run:
        with self.compute(gmacs=RECORDING_WORK * forward_gmacs(model.graph, len(x))):
            start = time.perf_counter()
            trace = model.graph.forward(x, model.bundle.params, keep_caches=False)
        elapsed = (time.perf_counter() - start) * 1000
        activations = trace.activations
        if self.shared is not None:  # the other workers map the same pages; this one drops its private copy
            published = self.shared.publish(run_id, model.id, model.version, elapsed, activations)
            if published is not None:
                activations = published.activations
        run = Run(run_id, model.id, model.version, activations, elapsed, time_axes=time_axes(model.graph))
        self._remember(run)
        return run

    def get(self, run_id: str, models: ModelStore) -> Run:
        """A run by id: from memory, or recomputed from its stored input (404 when neither is possible)."""
        run = self._cached(run_id)
        if run is not None:
            return run
        if len(run_id) != RUN_ID_LENGTH or not all(c in "0123456789abcdef" for c in run_id):
            raise ApiError(404, f"'{shorten(run_id)}' is not a run id (32 hex digits from POST "
                                "/api/models/{id}/activations)")
        stored = self._load_input(run_id)
        if stored is None:
            raise ApiError(404, f"run '{run_id}' is unknown or has expired: create it again with "
                                "POST /api/models/{model_id}/activations")
        model_id, version, x = stored
        model = models.get(model_id)
        if model.version != version:
            raise ApiError(410, f"run '{run_id}' was made with another version of model '{model_id}', which has "
                                "changed since: create the run again")
        return self._compute(run_id, model, x)

    def stats(self, run: Run, node_id: str) -> dict[str, float]:
        """The node's min, max, mean, std and share of zeros, computed once (min and max from its tiles')."""
        if node_id not in run.stats:
            low, high = self.channel_ranges(run, node_id)
            run.stats[node_id] = activation_stats(run.activations[node_id], float(low.min()), float(high.max()))
        return run.stats[node_id]

    @staticmethod
    def channel_ranges(run: Run, node_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Each tile's (channel's) minimum and maximum, computed once: for the statistics and the PNGs (a sequence
        (T, F) is one tile)."""
        found = run.ranges.get(node_id)
        if found is None:
            maps = as_channels(np.asarray(run.activations[node_id][0], dtype=np.float32), run.time_axes.get(node_id))
            found = run.ranges[node_id] = maps.min(axis=(1, 2)), maps.max(axis=(1, 2))
        return found

    def node_png(self, run: Run, node_id: str, scale: Scale = "channel") -> tuple[bytes, str]:
        """The node's feature maps as one tiled PNG, and its layout as JSON (without ranges) for the X-Tile-Layout
        header: encoded once per run, node and scale, and kept with the run while the memory budget allows.
        Identical requests arriving together wait for the first one's PNG rather than encoding it again."""
        key = (node_id, scale)
        found = run.pngs.get(key)
        if found is not None:
            return found
        with self._flights.hold(("png", run.run_id, *key)):
            found = run.pngs.get(key)
            if found is not None:
                return found
            png, layout = render_png(run.activations[node_id][0], scale, self.channel_ranges(run, node_id),
                                     run.time_axes.get(node_id))
            found = png, json.dumps(layout.model_dump(exclude={"ranges"}))
            with self._lock:
                if run.nbytes + len(png) <= self.max_bytes:  # else served, not kept
                    run.pngs[key] = found
                    run.png_bytes += len(png)
                    self._evict()
            return found
