"""A background job's progress as server-sent events, for every kind of job (attention, analysis).

Each event's ``id`` is the job's state counter (``seq``): a client resuming with ``Last-Event-ID`` gets only newer
states, and one resuming at or past a finished job's last state gets a stream that closes at once. A comment line
every ``HEARTBEAT_SECONDS`` keeps proxies from closing a quiet stream; the stream ends with the job, when the job's
files are removed, or when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from fastapi.responses import StreamingResponse

from app.services.attention_jobs import ACTIVE  # a job's states before it ends (every kind of job)

POLL_SECONDS = 0.1
HEARTBEAT_SECONDS = 10.0
RETRY_MS = 2000
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering: events as they come


class JobStatuses(Protocol):
    """What the stream reads of a job store: its status dict (``status``, ``seq``, ``done``, ...), 404 if unknown."""

    async def read_for_stream(self, job_id: str) -> dict[str, Any]: ...


#: the event's data for a status (``finished``: this is the ``end`` event)
Describe = Callable[[dict[str, Any], bool], dict[str, Any]]


def format_event(event: str, seq: int, data: dict[str, Any]) -> str:
    """One message in the text/event-stream format."""
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


async def job_events(jobs: JobStatuses, job_id: str, is_disconnected: Callable[[], Awaitable[bool]],
                     describe: Describe, after: int = -1, poll: float = POLL_SECONDS,
                     heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[str]:
    """Each new state of the job after ``after`` as an event (``progress``, then ``end``); closes after ``end``, at
    once when ``after`` is at or past a finished job's last state, or on disconnect."""
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = time.monotonic()
    while True:
        try:
            status = await jobs.read_for_stream(job_id)
        except Exception:  # removed meanwhile (cleaned up): nothing more will come
            return
        seq = int(status.get("seq", 0))
        finished = status["status"] not in ACTIVE
        if seq > after:
            after = seq
            quiet_since = time.monotonic()
            yield format_event("end" if finished else "progress", seq, describe(status, finished))
            if finished:
                return
        elif finished:  # resumed at or past the end: nothing more will come
            return
        if await is_disconnected():
            return
        if time.monotonic() - quiet_since > heartbeat:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(poll)


async def job_event_stream(jobs: JobStatuses, job_id: str, is_disconnected: Callable[[], Awaitable[bool]],
                           describe: Describe, last_event_id: int | None) -> StreamingResponse:
    """The response for a job's events route: 404 (from the store) before the stream starts for an unknown job."""
    await jobs.read_for_stream(job_id)
    after = -1 if last_event_id is None else last_event_id
    return StreamingResponse(job_events(jobs, job_id, is_disconnected, describe, after),
                             media_type="text/event-stream", headers=STREAM_HEADERS)
