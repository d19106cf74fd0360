"""Routes for what the network learned: backprop (see docs/learned.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["learned"])
