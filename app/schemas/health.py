"""Health check."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    """The server is up and answering."""

    status: Literal["ok"] = Field("ok", description="always 'ok' when the server answers", examples=["ok"])
