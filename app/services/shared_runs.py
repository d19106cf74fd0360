"""Runs shared by the workers of one machine: each run's activations in one file that every worker maps.

With ``--workers N``, a student's ``POST .../activations`` is answered by one worker and the twenty PNG fetches
that follow by any of them. Without sharing, every other worker recomputed the whole forward pass from the stored
input (EfficientNet-Lite0: 79 MB of activations, 0.1 s of CPU) and kept its own copy; measured in the lecture
load test with 2 workers, that made the machine four times slower than with one. Here the worker that computes a
run writes its activations once to ``<directory>/<run id>.run`` and maps it; the others map the same file, so the
pages exist once in memory whichever worker asks.

The directory is in ``/dev/shm`` (memory, never written to a disk) when it is large enough, else under the data
directory. Files are bounded by ``max_bytes`` in all (the oldest used go first); a worker that still maps a removed
file keeps it readable until its own run cache drops it.

File layout: ``MAGIC``, the header's length (8 bytes, little-endian), a JSON header (model id, version, the pass's
time and each node's dtype, shape and offset), then each activation's bytes, 64-byte aligned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("cnn_visualiser.runs")

MAGIC = b"CNNVRUN1"
ALIGN = 64
SUFFIX = ".run"
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class SharedRun:
    """A run read from its shared file: the activations are read-only views of one memory map."""

    model_id: str
    version: str
    elapsed_ms: float
    activations: dict[str, np.ndarray]


def aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


class SharedRuns:
    """The run files of one machine's workers (see the module docstring)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    @classmethod
    def for_data_dir(cls, data_dir: Path, max_bytes: int) -> SharedRuns:
        """The machine's shared runs for ``data_dir``: in ``/dev/shm`` when it has room for ``max_bytes`` twice
        over and the folder there is this user's, else in ``<data_dir>/runs/shared``."""
        key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
        in_memory = SHM / f"cnn-visualiser-{os.getuid()}-{key}"
        if SHM.is_dir():
            with contextlib.suppress(OSError):
                if shutil.disk_usage(SHM).free >= 2 * max_bytes:
                    in_memory.mkdir(mode=0o700, exist_ok=True)
                    status = in_memory.stat()
                    if status.st_uid == os.getuid() and not status.st_mode & 0o077:  # nobody else's to plant files
                        return cls(in_memory, max_bytes)
        return cls(Path(data_dir) / "runs" / "shared", max_bytes)

    def path(self, run_id: str) -> Path:
        return self.directory / f"{run_id}{SUFFIX}"

    def publish(self, run_id: str, model_id: str, version: str, elapsed_ms: float,
                activations: dict[str, np.ndarray]) -> SharedRun | None:
        """Write the run's file (atomically: a reader sees all or nothing) and map it; None when it cannot be
        written (logged: the run then lives in this worker's memory only)."""
        nodes, offset = [], 0
        arrays = {node: np.ascontiguousarray(a) for node, a in activations.items()}
        for node, a in arrays.items():
            nodes.append([node, a.dtype.str, list(a.shape), offset])
            offset = aligned(offset + a.nbytes)
        header = json.dumps({"model_id": model_id, "version": version, "elapsed_ms": elapsed_ms,
                             "nodes": nodes}).encode()
        start = aligned(len(MAGIC) + 8 + len(header))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".run-", dir=self.directory)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(MAGIC + len(header).to_bytes(8, "little") + header)
                    for (_, _, _, at), a in zip(nodes, arrays.values(), strict=True):
                        file.seek(start + at)
                        file.write(a.data)
                    file.truncate(start + offset)
                os.replace(temporary, self.path(run_id))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("cannot share run %s with the other workers through %s (%s): they will recompute it",
                        run_id, self.directory, exc)
            return None
        self.prune()
        return self.open(run_id)

    def open(self, run_id: str) -> SharedRun | None:
        """The run another worker (or this one) wrote, mapped read-only; None when there is none (or it is
        damaged)."""
        path = self.path(run_id)
        try:
            with open(path, "rb") as file:
                if file.read(len(MAGIC)) != MAGIC:
                    return None
                length = int.from_bytes(file.read(8), "little")
                header = json.loads(file.read(length))
            mapped = np.memmap(path, dtype=np.uint8, mode="r")
            start = aligned(len(MAGIC) + 8 + length)
            activations = {}
            for node, dtype, shape, at in header["nodes"]:
                kind = np.dtype(dtype)
                count = int(np.prod(shape, dtype=np.int64))
                view = mapped[start + at:start + at + count * kind.itemsize]
                activations[node] = view.view(kind).reshape(shape)
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: pruned last
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return SharedRun(str(header["model_id"]), str(header["version"]), float(header["elapsed_ms"]), activations)

    def prune(self) -> None:
        """Remove the least recently used files until the rest fit in ``max_bytes`` (the newest always stays)."""
        files = sorted(self._files(), reverse=True)
        total = 0
        for index, (_, size, path) in enumerate(files):
            total += size
            if index > 0 and total > self.max_bytes:
                path.unlink(missing_ok=True)

    def touch(self, run_id: str) -> None:
        """Mark the run's file as used now (a worker serving it from its own cache opens no file)."""
        with contextlib.suppress(OSError):
            os.utime(self.path(run_id))

    def forget_unused(self, idle_s: float) -> int:
        """Remove the files no worker opened for ``idle_s`` seconds (a later request maps a run its worker still
        holds, or recomputes it from its stored input); returns how many. Called when a worker rests: the files
        are memory in ``/dev/shm`` that no process would otherwise give back after a lecture's burst."""
        cutoff = time.time() - idle_s
        stale = [path for used, _, path in self._files() if used <= cutoff]
        for path in stale:
            path.unlink(missing_ok=True)  # or removed by another worker meanwhile
        return len(stale)

    def _files(self) -> list[tuple[float, int, Path]]:
        """Each run file's last use (modification time), size and path."""
        files = []
        with contextlib.suppress(OSError):
            for path in self.directory.glob(f"*{SUFFIX}"):
                with contextlib.suppress(FileNotFoundError):  # removed by another worker meanwhile
                    status = path.stat()
                    files.append((status.st_mtime, status.st_size, path))
        return files
