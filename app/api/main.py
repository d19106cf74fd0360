"""The /api router: every resource router."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import (
    architecture,
    arithmetic,
    attention,
    health,
    models,
    playground,
    receptive_field,
    runs,
    training,
)

api_router = APIRouter(prefix="/api")
for _routes in (health, arithmetic, architecture, playground, models, runs, receptive_field, attention, training):
    api_router.include_router(_routes.router)
