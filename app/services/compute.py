"""A bound on simultaneous forward/backward passes per process.

Each pass holds every activation of the model (about 80 MB for EfficientNet-Lite0 at 224×224), and
the thread pool runs up to 40 requests at once, so without a bound memory would grow with the load.
Requests beyond ``compute_slots`` queue; one that waits longer than ``compute_wait_s`` gets a 503.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ApiError

_slots: dict[int, threading.BoundedSemaphore] = {}
_guard = threading.Lock()


def _semaphore(slots: int) -> threading.BoundedSemaphore:
    with _guard:
        if slots not in _slots:
            _slots[slots] = threading.BoundedSemaphore(slots)
        return _slots[slots]


@contextmanager
def compute_slot(slots: int, wait_s: float) -> Iterator[None]:
    """Hold one of ``slots`` compute slots while the block runs."""
    semaphore = _semaphore(slots)
    if not semaphore.acquire(timeout=wait_s):
        raise ApiError(503, f"the server is busy (every compute slot was taken for {wait_s:.0f} s): retry shortly")
    try:
        yield
    finally:
        semaphore.release()
