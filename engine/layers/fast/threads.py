"""A small thread pool for work that NumPy does not spread over cores itself (depthwise convolution).

Matrix products run on OpenBLAS's threads; the depthwise path is many small products and copies, which
NumPy runs on the calling thread. NumPy releases the GIL inside most of them, so blocks of rows can run in
parallel on a few Python threads. It is opt-in: ``CNN_VIS_THREADS`` (or ``set_num_threads``) sets the
number of threads, the calling thread included; the default is 1 (everything on the calling thread).
Measured on a 2-vCPU machine, two threads burnt 1.5x the CPU time for no gain at batch 1 (sub-millisecond
layers; small stacked products serialise) and gained on large stride-1 layers only, so the default stays 1,
which also suits a server that runs several requests at once.

Why two threads gain so little here (measured on the same 2-vCPU machine, MobileNet at 224 x 224, batch 1):
two *processes* each running the depthwise layer 32 x 112 x 112 ran at 0.68 ms a call against 0.64 ms alone
(the cores scale), but two *threads* of one process running two independent such layers took 1.1 to 1.5 ms
a pair (1.0 to 1.2x), and ~10 us NumPy calls (copies, multiplies, small products) in two threads took 1.6 to
2x the time of one thread. A depthwise layer is dozens of such calls, and every call hands the GIL over; at
this size the hand-offs cost as much as the work saved, with or without cache-sized blocks and with OpenBLAS's
idle workers put to sleep (``OPENBLAS_THREAD_TIMEOUT=4``). (Commits 61752ce and 9643765.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "CNN_VIS_THREADS"
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_threads: int | None = None


def _from_env() -> int:
    value = os.environ.get(ENV_VAR, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def num_threads() -> int:
    """Threads the engine's own parallel loops use (the calling thread included)."""
    global _threads
    if _threads is None:
        _threads = _from_env()
    return _threads


def set_num_threads(threads: int | None) -> None:
    """Use ``threads`` threads from now on (None: read the environment again)."""
    global _threads, _pool, _pool_size
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    with _lock:
        _threads = threads
        if _pool is not None:
            _pool.shutdown(wait=False)  # work already queued still runs
            _pool, _pool_size = None, 0


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine"), workers
        return _pool


def run_parts(work: Callable[[int, int], T], total: int, min_part: int = 1) -> list[T]:
    """Split ``range(total)`` into up to ``num_threads()`` contiguous parts of at least ``min_part`` items and
    call ``work(begin, end)`` on each, in parallel; the calling thread does the first part itself.
    Returns the parts' results in order. ``work`` must only write to its own part of any output."""
    parts = max(1, min(num_threads(), total // max(1, min_part)))
    bounds = [total * i // parts for i in range(parts + 1)]
    if parts == 1:
        return [work(0, total)]
    futures: Sequence[Future[T]] = [_executor(parts - 1).submit(work, bounds[i], bounds[i + 1])
                                    for i in range(1, parts)]
    first = work(bounds[0], bounds[1])
    return [first, *(f.result() for f in futures)]
