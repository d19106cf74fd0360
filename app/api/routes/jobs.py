"""Analysis jobs: progress, events, results and files of the long computations of what the network learned."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["jobs"])
