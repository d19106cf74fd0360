"""The /api router: every resource router, plus optional ones (the training lab) when their module exists."""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import APIRouter

from app.api.routes import health

ROUTE_MODULES = ["health", "arithmetic", "architecture", "playground", "models", "runs",
                 "receptive_field", "attention", "training"]

api_router = APIRouter(prefix="/api")
for _name in ROUTE_MODULES:
    _module_name = f"app.api.routes.{_name}"
    if _name != "health" and importlib.util.find_spec(_module_name) is None:
        continue  # not written yet (or an optional lab): the rest of the API works without it
    api_router.include_router(importlib.import_module(_module_name).router if _name != "health" else health.router)
