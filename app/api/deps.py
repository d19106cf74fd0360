"""Dependencies shared by the routes, as ``Annotated`` aliases (override them in tests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.config import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]
