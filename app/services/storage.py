"""Writing to the data directory: a full or read-only disk is the admin's problem, said as such.

The services wrap every write that a request depends on in ``with writing("storing the model"): ...``;
an ``OSError`` meaning "no space" (ENOSPC, EDQUOT) or "may not write" (EROFS, EACCES, EPERM) becomes a
:class:`StorageError`, which app/errors.py answers with 507 or 503. Any other ``OSError`` (a missing file
that means "not found", say) passes through unchanged for its caller to judge.

Staging directories (``.upload-*``, ``.delete-*`` under ``<data dir>/models``) are where a model is
written before it is renamed into place, and where a deleted one is moved before it is removed. A
server killed meanwhile leaves them behind; :func:`remove_staging_leftovers` removes them at start-up.
Every process holds a shared lock on ``<models>/.staging.lock`` while it has a staging directory, and
the clean-up takes it exclusively, so a worker starting next to a busy one never removes its work.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

try:
    import fcntl
except ImportError:  # not on POSIX: no other worker is protected, the clean-up still works
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cnn_visualiser.storage")

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
STAGING_PREFIXES = (".upload-", ".delete-")
LOCK_NAME = ".staging.lock"

StorageKind = Literal["full", "read_only"]


class StorageError(Exception):
    """The data directory refused a write: ``kind`` is "full" or "read_only", ``what`` the action in words."""

    def __init__(self, kind: StorageKind, what: str) -> None:
        self.kind = kind
        self.what = what
        super().__init__(self.message)

    @property
    def status_code(self) -> int:
        """507 Insufficient Storage for a full disk, 503 for a directory the server may not write to."""
        return 507 if self.kind == "full" else 503

    @property
    def message(self) -> str:
        if self.kind == "full":
            return (f"the server's disk is full, so {self.what} failed: ask the lecturer or admin to free space "
                    "on it; nothing was stored, try again once they have")
        return (f"the server may not write to its data directory (read-only or no permission), so {self.what} "
                "failed: ask the lecturer or admin to make it writable; nothing was changed, and everything "
                "already stored can still be read and run")


def storage_kind(exc: OSError) -> StorageKind | None:
    """"full", "read_only", or None for an ``OSError`` that is not about the disk refusing writes."""
    if exc.errno in FULL_ERRNOS:
        return "full"
    if exc.errno in READ_ONLY_ERRNOS:
        return "read_only"
    return None


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a full or read-only disk inside the block into a :class:`StorageError` about ``what``."""
    try:
        yield
    except OSError as exc:
        kind = storage_kind(exc)
        if kind is None:
            raise
        log.warning("%s failed: %s", what, exc)
        raise StorageError(kind, what) from exc


@contextlib.contextmanager
def staging(models_dir: Path) -> Iterator[None]:
    """Hold the shared staging lock: start-up clean-up in another process leaves this one's work alone."""
    with _lock(models_dir, shared=True, wait=True):
        yield


@contextlib.contextmanager
def _lock(models_dir: Path, shared: bool, wait: bool) -> Iterator[bool]:
    """Yields whether the lock was taken (always, when ``wait``); raises OSError when the lock file cannot exist."""
    if fcntl is None:
        yield True
        return
    fd = os.open(models_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, mode)
            taken = True
        except BlockingIOError:
            taken = False
        yield taken
    finally:
        os.close(fd)  # releases the lock


def remove_staging_leftovers(models_dir: Path) -> list[str]:
    """Remove ``.upload-*`` and ``.delete-*`` left by a killed server; returns their names.

    Skipped (with a log line) when another process is staging right now or the directory cannot be written.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    try:
        with _lock(models_dir, shared=False, wait=False) as taken:
            if not taken:
                log.info("another process is storing or deleting a model: staging leftovers are left for later")
                return []
            removed = []
            for path in models_dir.iterdir():
                if path.name.startswith(STAGING_PREFIXES) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    if not path.exists():
                        removed.append(path.name)
    except OSError as exc:
        log.warning("could not remove staging leftovers in %s: %s", models_dir, exc)
        return []
    if removed:
        log.warning("removed %d half-written staging director%s left by an earlier server: %s", len(removed),
                    "y" if len(removed) == 1 else "ies", ", ".join(sorted(removed)))
    return removed
