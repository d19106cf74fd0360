"""One lock per key, alive while someone uses it: identical work arriving together waits for the first doing it.

    with flights.hold(key):
        found = cache.get(key)   # the first one's result, when it kept it
        if found is None:
            found = compute()    # only one thread per key gets here at a time
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class KeyedLocks:
    """Locks made on demand per key and dropped when nobody holds or waits for them (memory stays bounded)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, list] = {}  # key -> [lock, holders and waiters]

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]
