"""Following an attention job in the tests: its events, then its result."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient


def read_events(client: TestClient, events_url: str, headers: dict[str, str] | None = None
                ) -> list[tuple[int, str, dict]]:
    """Every event of the stream, until it closes: ``(id, event, data)``."""
    events, current = [], {}
    with client.stream("GET", events_url, headers=headers or {}) as stream:
        assert stream.status_code == 200, stream.read()
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if not line:
                if "event" in current:
                    events.append((int(current["id"]), current["event"], json.loads(current["data"])))
                current = {}
                continue
            key, _, value = line.partition(": ")
            current[key] = value
    return events


def follow_job(client: TestClient, created, timeout: float = 30.0):
    """The result of the job a POST answered with 202, once its events have ended (the events are checked)."""
    assert created.status_code == 202, created.text
    return finish_job(client, created.json(), timeout)


def finish_job(client: TestClient, job: dict, timeout: float = 30.0):
    """The result of ``job`` (as the POST returned it) once its events have ended and its status says so."""
    events = read_events(client, job["events_url"])
    assert events and events[-1][1] == "end", events
    deadline = time.monotonic() + timeout
    while client.get(job["status_url"]).json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client.get(job["result_url"])
