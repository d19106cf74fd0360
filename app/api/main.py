"""The /api router: every resource router."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import (
    adversarial,
    architecture,
    arithmetic,
    attention,
    backprop,
    channels,
    compare,
    feature_vis,
    health,
    jobs,
    models,
    playground,
    receptive_field,
    representations,
    runs,
    training,
)

api_router = APIRouter(prefix="/api")
for _routes in (health, arithmetic, architecture, playground, models, runs, compare, receptive_field, attention,
                training, jobs, channels, representations, backprop, adversarial, feature_vis):
    api_router.include_router(_routes.router)
