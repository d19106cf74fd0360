"""An uploaded model's files (``meta.json``, ``spec.json``, ``weights.npz``), read and checked, with what is wrong
with them said in words.

A file that cannot be read, does not parse or does not match the others raises :class:`DamagedModelError`
with a ``problem`` such as "its weights file (weights.npz) is truncated or damaged"; the model store
turns it into a 409 for the model's routes and an ``unavailable`` entry in the model list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError, WeightsError
from engine.graph import Graph
from engine.models.bundle import Preprocessing
from engine.models.weights import read_weights

#: meta.json fields the store needs, and the JSON type each must have
META_FIELDS: dict[str, tuple[type, str]] = {
    "name": (str, "a string"), "task": (str, "a string"), "source": (str, "a string"), "version": (str, "a string"),
    "labels": (list, "a list"), "preprocessing": (dict, "an object"),
}


class DamagedModelError(Exception):
    """A stored model that cannot be loaded: ``problem`` says why, ``name`` is its display name if readable."""

    def __init__(self, problem: str, name: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.name = name


@dataclass
class StoredFiles:
    """What an uploaded model's directory holds, checked."""

    meta: dict[str, Any]
    graph: Graph
    params: dict[str, np.ndarray]
    preprocessing: Preprocessing


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DamagedModelError when it is missing, unreadable, not JSON or not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DamagedModelError(f"its {path.name} is missing") from None
    except UnicodeDecodeError:
        raise DamagedModelError(f"its {path.name} is not text (damaged)") from None
    except OSError as exc:
        raise DamagedModelError(f"its {path.name} cannot be read ({exc.strerror or 'input/output error'})") from None
    if not text.strip():
        raise DamagedModelError(f"its {path.name} is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedModelError(f"its {path.name} is not valid JSON (truncated or damaged: {exc.msg}, line "
                           f"{exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise DamagedModelError(f"its {path.name} is not a JSON object")
    return value


def check_meta(meta: dict[str, Any]) -> Preprocessing:
    """The model's preprocessing; DamagedModelError when a field the store needs is missing or of the wrong type."""
    for key, (kind, words) in META_FIELDS.items():
        if key not in meta:
            raise DamagedModelError(f"its meta.json lacks the field '{key}'")
        if not isinstance(meta[key], kind):
            raise DamagedModelError(f"its meta.json's '{key}' is not {words}")
    try:
        return Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocessing"].items()})
    except TypeError:
        raise DamagedModelError("its meta.json's 'preprocessing' does not have the fields resize, crop, mean and std "
                           "(and optionally grayscale, invert)") from None


def read_stored(directory: Path) -> StoredFiles:
    """Read and check ``directory``'s meta.json, spec.json and weights.npz (DamagedModelError saying what is wrong)."""
    meta = read_json(directory / "meta.json")
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    try:
        preprocessing = check_meta(meta)
        spec = read_json(directory / "spec.json")
        try:
            graph = Graph(spec)
        except EngineError as exc:
            raise DamagedModelError(f"its spec.json does not describe a graph the engine can build ({exc})") from None
        weights = directory / "weights.npz"
        if not weights.is_file():
            raise DamagedModelError("its weights file (weights.npz) is missing")
        try:
            params = read_weights(weights)
        except WeightsError as exc:
            reason = str(exc).split(": ", 1)[-1]  # without read_weights' "cannot read weights from <file>: "
            raise DamagedModelError(f"its weights file (weights.npz) cannot be read: {reason}") from None
        try:
            graph.check_params(params)
        except WeightsError as exc:
            raise DamagedModelError(f"its weights (weights.npz) do not match its spec.json ({exc})") from None
    except DamagedModelError as exc:
        exc.name = name
        raise
    return StoredFiles(meta, graph, params, preprocessing)
