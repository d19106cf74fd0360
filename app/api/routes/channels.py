"""Routes for what the network learned: channels (see docs/learned.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["learned"])
