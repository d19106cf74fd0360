"""Slots shared by every process on the machine: lock files taken with ``flock``.

A pool is ``count`` files ``<directory>/<name>-<i>.lock``. Holding a slot is holding an exclusive
``flock`` on one of them through a file descriptor of one's own: other threads and other worker processes
(which open the files themselves) cannot take it meanwhile, and a process that crashes or is killed
loses its locks with its descriptors, so no slot is ever leaked. Taking waits by polling (every few
milliseconds, never holding a lock while asleep) up to a deadline; a request for several slots takes
all of them or none, so two large requests cannot each hold half of what both need.

    pool = SlotPool(data_dir / "slots", "compute", 2)
    held = pool.take(1, wait_s=120)   # None when every slot stayed taken for 120 s
    ...
    pool.release(held)
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from pathlib import Path

#: the first polls are quick (a slot freed by a short pass is taken within milliseconds), later ones slower
POLL_FIRST_S = 0.002
POLL_MAX_S = 0.05
#: flock needs no write access: reading is enough (a file deleted meanwhile is made again)
OPEN_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC


class SlotPool:
    """``count`` slots, shared through lock files by every process that uses the same ``directory`` and ``name``.

    ``directory=None``: slots of this process only (the last resort when no lock file can be made anywhere)."""

    def __init__(self, directory: Path | None, name: str, count: int) -> None:
        if count < 1:
            raise ValueError(f"a slot pool needs at least one slot, not {count}")
        self.directory = None if directory is None else Path(directory)
        self.name = name
        self.count = count
        self._released = threading.Condition()  # wakes this process's waiters when one of its slots is freed
        self._local_free = count  # directory None: the slots free in this process
        self.paths: list[Path] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.paths = [self.directory / f"{name}-{i}.lock" for i in range(count)]
            for path in self.paths:  # now, so that a disk that fills up later cannot fail a request
                os.close(os.open(path, OPEN_FLAGS, 0o600))

    def try_take(self, n: int = 1) -> list[int] | None:
        """``n`` slots now (their descriptors), or None (and nothing held) when fewer than ``n`` are free."""
        if not 1 <= n <= self.count:
            raise ValueError(f"cannot take {n} of {self.count} slots")
        if self.directory is None:
            with self._released:
                if self._local_free < n:
                    return None
                self._local_free -= n
            return [-1] * n
        held: list[int] = []
        start = random.randrange(self.count)  # spread the takers over the files: fewer failed attempts
        for k in range(self.count):
            if len(held) == n:
                break
            fd = os.open(self.paths[(start + k) % self.count], OPEN_FLAGS, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                self.release(held)
                raise
            held.append(fd)
        if len(held) < n:
            self.release(held)
            return None
        return held

    def take(self, n: int, wait_s: float) -> list[int] | None:
        """``n`` slots, waiting up to ``wait_s`` seconds for them; None when they did not come free in time."""
        deadline = time.monotonic() + wait_s
        pause = POLL_FIRST_S
        while True:
            held = self.try_take(n)
            if held is not None:
                return held
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._released:  # woken at once by a release in this process; polls for the others'
                self._released.wait(min(pause, left))
            pause = min(pause * 1.5, POLL_MAX_S)

    def release(self, held: list[int]) -> None:
        """Give back slots taken with :meth:`take` or :meth:`try_take` (closing a descriptor drops its lock)."""
        with self._released:
            if self.directory is None:
                self._local_free += len(held)
            else:
                for fd in held:
                    os.close(fd)
            held.clear()
            self._released.notify_all()

    def free(self) -> int:
        """How many slots are free right now, in every process (a snapshot, for tests and diagnostics)."""
        if self.directory is None:
            return self._local_free
        taken = []
        for path in self.paths:
            fd = os.open(path, OPEN_FLAGS, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append(fd)
        count = len(taken)
        for fd in taken:
            os.close(fd)
        return count
