"""docs/deployment.md stays true to the code: every setting is in its table, with the default the code has."""

from __future__ import annotations

import re

from app.core.config import ENV_PREFIX, Settings
from tests.api.live_server import REPO

DOC = REPO / "docs" / "deployment.md"


def settings_table() -> dict[str, str]:
    """``CNN_VIS_NAME`` -> the default column of the doc's last table."""
    table = DOC.read_text().split("\n## Settings\n", 1)[1]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.MULTILINE))


def test_every_setting_is_documented_and_nothing_else():
    documented = settings_table()
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert set(documented) == expected


def test_the_documented_defaults_are_the_codes():
    documented = settings_table()
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            continue
        shown = documented[ENV_PREFIX + name.upper()].strip()
        value = field.default
        if isinstance(value, bool):
            assert shown == str(value).lower(), name
        elif value is None:
            assert shown == "unset", name
        elif isinstance(value, int) and value >= 2**20 and value % 2**20 == 0:
            assert shown == f"{value // 2**20} MiB", name
        else:
            assert shown == str(value), name


def test_the_readme_links_the_deployment_guide():
    assert "](docs/deployment.md)" in (REPO / "README.md").read_text()
