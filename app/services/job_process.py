"""A background attention job's passes in a process of their own, at a lower CPU priority.

In the worker that took the request, a job's passes would share the interpreter lock with every request that
worker answers: measured in the lecture-hall load (one worker, 2 cores), a heavy request's forward pass held its
compute slot for 360 ms instead of 45 ms while a Score-CAM ran beside it, whatever the job thread's ``nice``. So the
job's thread starts a child process (``spawn``: no threads or locks inherited) that loads the model from the data
directory, runs the method and sends back, over a pipe, JSON messages only (never a pickle from the child):

- ``["progress", done, total]`` after each batch of passes;
- ``["done", answer]``: the answer as the synchronous route gives it (``AttentionResponse`` as JSON text);
- ``["failed", status, detail]``: the status and message the synchronous route would have answered.

The child runs at ``nice`` ``CHILD_NICE`` (19, the lowest) with one BLAS thread; cancelling a job kills it at
once, and when it ends the memory its passes took goes back to the system with it. The parent holds the job's
background compute slot for the whole run, so the machine runs ``background_compute_slots`` such children at once.

Models that exist only in one worker's memory cannot be loaded by a child (``ModelStore.reloadable`` says so):
their jobs compute in the job's thread, one batch of passes per background slot.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.services.attention import AttentionRequest, PreparedAttention

#: the child's priority: the lowest, below the job threads' nice 10 (it used to add 10 to the nice 10 it inherits
#: from the job's thread, which caps at 19: said here, not left to inheritance)
CHILD_NICE = 19
#: how often the parent looks for a cancel request while the child computes
POLL_S = 0.2


@dataclass(frozen=True)
class ChildJob:
    """What the child needs to redo ``PreparedAttention`` on its own: the model by id and version, and the input."""

    data_dir: str
    model_id: str
    version: str
    x: np.ndarray
    picture: np.ndarray | None
    request: AttentionRequest
    max_macs: int
    estimated_macs: int


def compute_in_child(attention: PreparedAttention, data_dir: Path, progress: Callable[[int, int], None],
                     check: Callable[[], None]) -> str:
    """The job's answer (``AttentionResponse`` JSON text), computed in a child process. ``progress(done, total)``
    is called after each batch of passes and ``check()`` every ``POLL_S`` meanwhile; either may raise to stop the
    job (the child is killed at once). A failure the child reports is raised as ``ApiError`` with the status and
    message the synchronous route would have given."""
    from app.errors import ApiError

    job = ChildJob(str(data_dir), attention.model.id, attention.model.version, attention.prepared.x,
                   attention.prepared.picture, attention.request, attention.max_macs, attention.estimated_macs)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=child_main, args=(job, sender), name=f"attention-{attention.request.method}",
                            daemon=True)
    child.start()
    sender.close()  # the child holds the only sending end: its death ends the pipe
    try:
        while True:
            if not receiver.poll(POLL_S):
                check()
                continue
            try:
                message: list[Any] = json.loads(receiver.recv_bytes())
            except EOFError:
                child.join(timeout=5)
                raise ApiError(503, f"the process computing the map ended (exit code {child.exitcode}) without an "
                                    "answer (the server may have run out of memory): send the request again later, "
                                    "or ask for fewer passes") from None
            kind = message[0]
            if kind == "progress":
                progress(int(message[1]), int(message[2]))
            elif kind == "done":
                return str(message[1])
            else:
                raise ApiError(int(message[1]), str(message[2]))
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=10)


def child_main(job: ChildJob, sender: Any) -> None:
    """The child: load the model, compute, send JSON messages (see the module's docstring)."""
    from app.core.cpu import limit_blas_threads
    from app.errors import ApiError
    from app.services.attention import compute_attention
    from app.services.attention_jobs import error_of
    from app.services.compute import unbounded
    from app.services.inputs import PreparedInput
    from app.services.models import ModelStore

    def send(*message: Any) -> None:
        sender.send_bytes(json.dumps(message).encode())

    with contextlib.suppress(OSError):  # may not lower priority: compute anyway
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), CHILD_NICE))
    limit_blas_threads(1)
    try:
        model = ModelStore(Path(job.data_dir)).get(job.model_id)
        if model.version != job.version:
            raise ApiError(409, f"model '{job.model_id}' changed while the job waited: send the request again")
        attention = PreparedAttention(model, PreparedInput(job.x, job.picture), job.request, job.max_macs,
                                      job.estimated_macs)
        answer = compute_attention(attention, unbounded, lambda done, total: send("progress", done, total))
        send("done", answer.model_dump_json())
    except Exception as exc:  # every failure goes back as the route's answer would be
        status, detail = error_of(exc)
        send("failed", status, detail)
    finally:
        sender.close()
