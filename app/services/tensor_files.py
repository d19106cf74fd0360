"""A small content-addressed store of ``.npy`` files that answers link to (an adversarial example's tensors).

A file's name is 32 hex digits of the SHA-256 of its bytes, so equal tensors share a file, a name never changes
meaning, and any worker of the machine serves any link (the files live in the data directory). The store is
bounded: after each write the oldest files go until at most ``max_files`` files and ``max_bytes`` bytes remain
(reading a file marks it as used). A link may therefore expire; it then answers 404, saying how to make it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from app.errors import ApiError, shorten
from app.services.storage import writing

NAME = re.compile(r"[0-9a-f]{32}")
SUFFIX = ".npy"


class TensorFiles:
    """``.npy`` files under ``directory``, named by their content, at most ``max_files`` and ``max_bytes``."""

    def __init__(self, directory: Path, max_files: int = 300, max_bytes: int = 128 * 1024 * 1024,
                 how_to_remake: str = "send the request again") -> None:
        self.directory = Path(directory)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.how_to_remake = how_to_remake

    def save(self, array: np.ndarray) -> str:
        """Store ``array`` (its dtype kept) and return its name (32 hex digits)."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        name = hashlib.sha256(data).hexdigest()[:32]
        path = self.directory / f"{name}{SUFFIX}"
        with writing("storing the tensor"):
            if path.exists():
                os.utime(path)
                return name
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".tensor-", dir=self.directory)
            try:
                with os.fdopen(handle, "wb") as f:
                    f.write(data)
                os.replace(temporary, path)  # atomic: a reader in another worker sees all or nothing
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        return name

    def read(self, name: str) -> bytes:
        """The bytes of the file called ``name``; 404 when the name is not one this store gives, or has expired."""
        if NAME.fullmatch(name) is None:
            raise ApiError(404, f"'{shorten(name)}' is not a tensor name (32 hex digits, from a link in an answer)")
        path = self.directory / f"{name}{SUFFIX}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ApiError(404, f"tensor '{name}' is unknown or has expired (the server keeps the latest "
                                f"{self.max_files}): {self.how_to_remake}") from None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def _prune(self) -> None:
        """Remove the least recently used files beyond ``max_files`` or ``max_bytes`` (the newest always stays)."""
        files = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # removed by another worker meanwhile
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        files.sort(reverse=True)
        kept_bytes = 0
        for count, (_, size, path) in enumerate(files):
            kept_bytes += size
            if count > 0 and (count >= self.max_files or kept_bytes > self.max_bytes):
                path.unlink(missing_ok=True)
