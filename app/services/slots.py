"""Slots shared by every process on the machine: lock files taken with ``flock``.

A pool is ``count`` files ``<directory>/<name>-<i>.lock``. Holding a slot is holding an exclusive
``flock`` on one of them through a file descriptor of one's own: other threads and other worker processes
(which open the files themselves) cannot take it meanwhile, and a process that crashes or is killed
loses its locks with its descriptors, so no slot is ever leaked. A request for several slots takes
all of them or none, so two large requests cannot each hold half of what both need.

**Waiting in order, across processes.** A taker that finds no free slot (or others already waiting) waits in
this process's queue; the first of them (as many as could be served at once) also leave a *ticket* in
``<directory>/<name>.queue/``: a file named by their priority (by default the time they arrived, so the queue is
first come, first served; ``ComputeSlots`` puts shorter work first) and the slots they ask for, which they hold an
``flock`` on while they wait. A waiter may try to take slots only while the requests of the live tickets ahead of
it and its own fit in ``count`` (behind a request for several slots, only the head of the queue may try: else
single requests would keep it from ever finding all it needs free). Ticket holders poll every ``POLL_FIRST_S``
and read the queue again whenever its directory changes, so a slot freed in another worker is taken within
milliseconds (one freed in their own at once); the waiters behind them wait on a condition and cost nothing.
Without the queue, the waiters of the process that freed a slot (woken at once) always beat those of the other
workers (polling), so with ``--workers 2`` one worker ran both passes under one GIL while the other idled, and
every waiter polled every lock file (the lecture load test: 36 requests/s with 2 workers against 43 with 1; in
order, 56-61). A ticket whose holder died has no lock: the next waiter that reads it removes it.

    pool = SlotPool(data_dir / "slots", "compute", 2)
    held = pool.take(1, wait_s=120)   # None when every slot stayed taken for 120 s
    ...
    pool.release(held)
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import threading
import time
from pathlib import Path

#: the first waiters poll for a slot this often (a slot freed by a short pass is taken within milliseconds)
POLL_FIRST_S = 0.004
#: a waiter with a ticket reads the whole queue at least this often (and whenever the queue's directory changes)
RANK_EVERY_S = 0.02
#: a ticket's name: its priority in microseconds, pid and a number (zero-padded: names sort as the local queue
#: does), then the slots it asks for
TICKET_FORMAT = "{key:020d}-{pid:010d}-{seq:020d}-{n}.ticket"
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
        self._held_here = 0  # with lock files: the slots this pool object holds (it cannot take more than count)
        self._local_queue: list[tuple[int, int, int]] = []  # this process's waiters: (priority in µs, number, slots)
        self._seq = itertools.count()
        self.paths: list[Path] = []
        self.queue: Path | None = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.paths = [self.directory / f"{name}-{i}.lock" for i in range(count)]
            for path in self.paths:  # now, so that a disk that fills up later cannot fail a request
                os.close(os.open(path, OPEN_FLAGS, 0o600))
            self.queue = self.directory / f"{name}.queue"
            self.queue.mkdir(mode=0o700, exist_ok=True)

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
        try:
            for k in range(self.count):
                if len(held) == n:
                    break
                fd = lock_nowait(self.paths[(start + k) % self.count])
                if fd is not None:
                    held.append(fd)
        except BaseException:
            self._close(held)
            raise
        if len(held) < n:
            self._close(held)
            return None
        with self._released:
            self._held_here += n
        return held

    @staticmethod
    def _close(held: list[int]) -> None:
        """Drop locks taken on the way to a request that could not have all it asked for."""
        for fd in held:
            os.close(fd)
        held.clear()

    def take(self, n: int, wait_s: float, priority: float | None = None) -> list[int] | None:
        """``n`` slots, waiting up to ``wait_s`` seconds for them; None when they did not come free in time.

        Waiters are served in the order of ``priority`` (a ``time.monotonic()`` value: smaller first), by default
        the time they arrived. A taker never passes a waiter that is ahead of it: it may try only while the slots
        asked for by the waiters ahead of it and its own fit in ``count``."""
        deadline = time.monotonic() + wait_s
        key = time.monotonic() if priority is None else priority
        place = (max(0, int(key * 1e6)), next(self._seq), n)
        with self._released:
            alone = not self._local_queue
            self._local_queue.append(place)
            self._local_queue.sort()
        ticket: tuple[str, int] | None = None
        try:
            if alone and not self._anyone_waiting():
                held = self.try_take(n)
                if held is not None:
                    return held
            first, next_rank, seen = False, 0.0, -1
            while True:
                with self._released:  # behind this process's waiters that fill the pool: wait for them to leave
                    while not fits(self._ahead_here(place), n, self.count):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return None
                        self._released.wait(left)
                if ticket is None and self.queue is not None:
                    try:
                        ticket = self._join(place)
                    except OSError:  # no room for a ticket (a full disk): wait unordered, as one of the first
                        ticket = ("", -1)
                now = time.monotonic()
                changed = self._queue_version()
                if now >= next_rank or changed != seen:  # waiters came or went (or it is time to look again)
                    first = fits(self._ahead(place, ticket), n, self.count)
                    next_rank, seen = now + RANK_EVERY_S, changed
                # this process holding every slot itself, only its own release (which wakes it) can free one
                possible = self.directory is None or self._held_here + n <= self.count
                if first and possible and fits(self._ahead_here(place), n, self.count):  # a shorter job came?
                    held = self.try_take(n)
                    if held is not None:
                        return held
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with self._released:  # woken at once by a release or a departure in this process
                    if self._released.wait(min(POLL_FIRST_S if possible else RANK_EVERY_S, left)):
                        next_rank = 0.0
        finally:
            self._leave(place, ticket)

    # --- the queue of waiters ----------------------------------------------------------------------------

    def _anyone_waiting(self) -> bool:
        """Whether any process has a waiter in the queue."""
        if self.queue is None:
            return False
        with contextlib.suppress(OSError), os.scandir(self.queue) as entries:
            return any(not entry.name.startswith(".") for entry in entries)
        return False

    def _queue_version(self) -> int:
        """Changes whenever a ticket comes or goes in any process (the directory's modification time)."""
        if self.queue is None:
            return 0
        try:
            return os.stat(self.queue).st_mtime_ns
        except OSError:
            return 0

    def _join(self, place: tuple[int, int, int]) -> tuple[str, int]:
        """The ticket of a waiter at ``place`` (its priority in microseconds, a number, the slots it asks for): its
        name and the descriptor that holds its lock."""
        assert self.queue is not None
        name = TICKET_FORMAT.format(key=place[0], pid=os.getpid(), seq=place[1], n=place[2])
        temporary = self.queue / f".{name}"  # locked before it is visible: nobody takes it for a dead one
        fd = os.open(temporary, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(temporary, self.queue / name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return name, fd

    def _leave(self, place: tuple[int, int, int], ticket: tuple[str, int] | None) -> None:
        try:
            if ticket is not None and ticket[1] >= 0:
                with contextlib.suppress(OSError):
                    os.unlink(self.queue / ticket[0])
                os.close(ticket[1])
        finally:
            with self._released:
                self._local_queue.remove(place)
                self._released.notify_all()  # the next in line may now take a slot

    def _ahead_here(self, place: tuple[int, int, int]) -> list[int]:
        """The slots asked for by each of this process's waiters ahead of ``place``."""
        with self._released:
            return [other[2] for other in self._local_queue[:self._local_queue.index(place)]]

    def _ahead(self, place: tuple[int, int, int], ticket: tuple[str, int] | None) -> list[int]:
        """The slots asked for by each live waiter of every process ahead of ``place`` (listed until they fill the
        pool: only whether this waiter's own still fit matters). Tickets whose holder died are removed."""
        if self.queue is None or ticket is None or not ticket[0]:
            return self._ahead_here(place)
        try:
            names = sorted(n for n in os.listdir(self.queue) if not n.startswith(".") and n < ticket[0])
        except OSError:
            return self._ahead_here(place)
        ahead: list[int] = []
        for other in names:
            if sum(ahead) >= self.count:
                break
            if self._alive(self.queue / other):
                ahead.append(ticket_units(other))
        return ahead

    @staticmethod
    def _alive(path: Path) -> bool:
        """Whether a waiter still holds ``path`` (a ticket nobody holds is removed)."""
        try:
            fd = lock_nowait(path, os.O_RDONLY | os.O_CLOEXEC)  # never made again once its waiter removed it
        except FileNotFoundError:
            return False  # it left meanwhile
        except OSError:
            return True  # unreadable: count it, rather than pass a waiter
        if fd is None:
            return True  # its waiter holds it
        with contextlib.suppress(OSError):
            os.unlink(path)  # its waiter died (a killed worker): nobody else would remove it
        os.close(fd)
        return False

    def release(self, held: list[int]) -> None:
        """Give back slots taken with :meth:`take` or :meth:`try_take` (closing a descriptor drops its lock)."""
        with self._released:
            if self.directory is None:
                self._local_free += len(held)
            else:
                self._held_here -= len(held)
                for fd in held:
                    os.close(fd)
            held.clear()
            self._released.notify_all()

    def free(self) -> int:
        """How many slots are free right now, in every process (a snapshot, for tests and diagnostics)."""
        if self.directory is None:
            return self._local_free
        taken = [fd for fd in map(lock_nowait, self.paths) if fd is not None]
        count = len(taken)
        self._close(taken)
        return count


def lock_nowait(path: Path, flags: int = OPEN_FLAGS) -> int | None:
    """A descriptor of ``path`` holding an exclusive ``flock`` on it, or None when another descriptor holds one."""
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def ticket_units(name: str) -> int:
    """The slots a ticket asks for, from its name (1 for a name without them)."""
    try:
        return int(name.removesuffix(".ticket").rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 1


def fits(ahead: list[int], n: int, count: int) -> bool:
    """Whether a waiter asking for ``n`` of ``count`` slots may try, behind waiters asking for ``ahead``: among the
    first ``count`` when every request is for one slot; only at the head of the queue behind a request for
    several (else the single ones, each taking a slot as the last frees it, would keep it from ever having all)."""
    if any(units > 1 for units in ahead):
        return False
    return sum(ahead) + n <= count
