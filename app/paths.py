"""Where the front-end's files are: ``static/`` and ``templates/`` beside the ``app`` package (a checkout or
an editable install), else in the working directory (an installed package, as in the Docker image)."""

from __future__ import annotations

from pathlib import Path


def find_dir(name: str) -> Path:
    """The repository's ``static/`` or ``templates/``: next to the ``app`` package, else in the working directory."""
    beside_package = Path(__file__).resolve().parents[1] / name
    return beside_package if beside_package.is_dir() else Path.cwd() / name
