"""The one place that connects to Redis (``Settings.redis_url``), and turns an unreachable or failing Redis into
an error that says so: :class:`RedisUnavailableError`, answered as **503** by ``app/errors.py``.

redis-py connects lazily: :func:`connect` builds a client (and by default pings once, so a worker or a script
fails at start with the URL and the reason); every later call that loses the server raises
``redis.exceptions.ConnectionError`` or ``TimeoutError``, which :func:`redis_errors` turns into the same error
naming what the request was doing. Passwords never appear in a message (:func:`safe_url`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0  # a command may take this long (none of ours blocks: blocking reads use the async client)


class RedisUnavailableError(Exception):
    """Redis cannot be reached (or refuses a command), so ``what`` failed: the admin's to fix (503)."""

    status_code = 503

    def __init__(self, url: str, what: str, reason: str) -> None:
        self.url = safe_url(url)
        self.what = what
        self.message = (f"the job store (Redis at {self.url}, CNN_VIS_REDIS_URL) cannot be used, so {what} failed: "
                        f"{reason}. Try again in a moment; if it persists, ask the lecturer or admin to check that "
                        "redis-server is running and reachable")
        super().__init__(self.message)


def safe_url(url: str) -> str:
    """``url`` without its password: ``redis://:secret@host:6379/0`` → ``redis://:***@host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def redis_errors(url: str, what: str) -> Iterator[None]:
    """Lost connections, time-outs and refused commands (out of memory, read-only replica) as
    :class:`RedisUnavailableError` saying that ``what`` failed."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise RedisUnavailableError(url, what, f"it does not answer ({reason_of(exc)})") from exc
    except (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError, redis.exceptions.BusyLoadingError,
            redis.exceptions.AuthenticationError) as exc:
        raise RedisUnavailableError(url, what, f"it refused the command ({reason_of(exc)})") from exc


def connect(url: str, check: bool = True) -> redis.Redis:
    """A client for ``url`` (a pool of connections, safe to share between threads); with ``check``, ping it once
    (:class:`RedisUnavailableError` naming the URL and the reason when it does not answer)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
                                  health_check_interval=30)
    if check:
        with redis_errors(url, "connecting"):
            client.ping()
    return client


def connect_async(url: str) -> redis.asyncio.Redis:
    """An asyncio client for ``url``, for blocking reads (``XREAD BLOCK``) that must not hold a thread; it
    connects on first use, in the event loop that uses it."""
    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, health_check_interval=30)
