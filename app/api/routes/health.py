"""GET /api/health: is the server up.

An ``async`` route: it runs on the event loop itself, so it never waits for a thread of the pool (which
requests queueing for a compute slot may hold) nor for any lock.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas.health import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=Health)
async def read_health() -> Health:
    """Answer ``{"status": "ok"}`` while the server is up (used by the Docker health check); never waits, even
    when every compute slot is taken."""
    return Health()
