"""GET /api/health: is the server up."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas.health import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=Health)
def read_health() -> Health:
    """Answer ``{"status": "ok"}`` while the server is up (used by the Docker health check)."""
    return Health()
