"""Routes for what the network learned: adversarial (see docs/learned.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["learned"])
