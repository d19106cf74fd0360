"""How a worker shares the machine's cores: one BLAS thread per pass, and background work that yields.

- **BLAS threads.** NumPy's OpenBLAS starts a thread per core for every matrix product. The compute slots
  (``app.services.compute``) already run as many passes at once as the machine has cores, so a second layer
  of threads only oversubscribes them: measured on EfficientNet-Lite0 on 2 cores, a forward pass takes 42 ms
  of CPU with one BLAS thread and 76 ms with two (the extra threads spin while waiting), for the same 40 ms of
  wall time when the machine is otherwise idle. ``limit_blas_threads`` sets it at run time (threadpoolctl), so
  it holds however the server is started (``cnn-visualiser serve``, ``uvicorn --workers N``, an RQ worker).
- **Background work yields.** A training job or a many-pass attention job runs for seconds to minutes; its
  thread lowers its own scheduling priority (``nice``) so that, when the cores are busy, the requests people
  are waiting for get them first, and the job uses what is left.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("cnn_visualiser.cpu")

#: how much a background thread yields: nice 10 gets about a tenth of the CPU a nice-0 thread gets on a shared core
BACKGROUND_NICE = 10

_limits: list[object] = []  # keeps threadpoolctl's limiter alive (it restores the old value when collected)


def limit_blas_threads(threads: int) -> bool:
    """Use at most ``threads`` BLAS threads per matrix product in this process (0: leave BLAS as it is);
    returns whether a limit was applied."""
    if threads < 1:
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its default
        log.warning("threadpoolctl is missing: BLAS keeps its own thread count")
        return False
    _limits.append(threadpool_limits(limits=threads, user_api="blas"))
    return True


def blas_threads() -> int | None:
    """The BLAS thread count in force (None when no BLAS library is loaded)."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts) if counts else None


def run_in_background() -> bool:
    """Lower the calling thread's scheduling priority to ``BACKGROUND_NICE`` (Linux: priority is per thread);
    returns whether it was lowered. Call it first thing in a background job's thread."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, BACKGROUND_NICE))
        return True
    except OSError:
        return False
