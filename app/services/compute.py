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


class ComputeSlots:
    """At most ``slots`` passes at once in this process; ``with compute(): ...`` holds one while the block runs.

    A request that waits longer than ``wait_s`` for a slot gets a 503."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise ApiError(503, f"the server is busy (every compute slot was taken for {self.wait_s:.0f} s): "
                                "retry shortly")
        try:
            yield
        finally:
            self._semaphore.release()
