"""The built-in models: what exists (cheap to list) and each model, loaded once on first use.

Adding a model is one line in ``_register_builtins()`` below::

    register("digits_classic", "Classic digit CNN", "digit classification", "engine.models.digits:load_classic")

The loader is named as ``"module:function"`` and imported only when the model is first loaded, so
listing models costs nothing. It returns a :class:`~engine.models.bundle.ModelBundle`; if it takes a
``cache_dir`` argument it gets the directory where converted weights are cached
(``$CNN_VIS_DATA_DIR/cache`` unless the caller says otherwise).

Pre-convert everything (e.g. while building a container image)::

    python -m engine.models.registry prepare [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.models.bundle import ModelBundle

Loader = Callable[..., ModelBundle]


@dataclass(frozen=True)
class ModelEntry:
    """A built-in model as listed before it is loaded."""

    id: str
    name: str
    task: str
    loader: str  # "package.module:function"
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "loader"}


_ENTRIES: dict[str, ModelEntry] = {}
_LOADED: dict[tuple[str, Path], ModelBundle] = {}
_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def register(model_id: str, name: str, task: str, loader: str, description: str = "") -> None:
    """Make a built-in model available as ``model_id``; ``loader`` is ``"module:function"``."""
    module, sep, function = loader.partition(":")
    if not sep or not module or not function:
        raise ValueError(f"loader must be 'package.module:function', got {loader!r}")
    if model_id in _ENTRIES:
        raise ValueError(f"model id '{model_id}' is registered twice")
    _ENTRIES[model_id] = ModelEntry(model_id, name, task, loader, description)


def _register_builtins() -> None:
    register("efficientnet_lite0", "EfficientNet-Lite0", "imagenet classification",
             "engine.models.efficientnet_lite:load_bundle",
             "A pretrained ImageNet classifier (1000 classes) for mobile devices: 16 inverted-bottleneck "
             "blocks with depthwise convolutions and ReLU6.")
    register("digits_classic", "Classic digit CNN (LeNet style)", "digit classification",
             "engine.models.digits:load_classic",
             "Trained by the engine on real MNIST digits (98.6% on 2,000 held-out digits): conv 5x5 (8), pool, "
             "conv 5x5 (16), pool, fully connected (10); small enough to draw every neuron.")
    register("digits_resnet", "Residual digit CNN with attention pooling", "digit classification",
             "engine.models.digits:load_resnet",
             "Trained by the engine on real MNIST digits (98.9% on 2,000 held-out digits): batch norm, two skip "
             "connections, and a learned spatial attention map that pools the last features.")
    register("digits_lstm", "LSTM reading the digit row by row", "digit classification",
             "engine.models.sequence_digits:load_lstm",
             "A recurrent network, trained by the engine on real MNIST digits (98.6% on 2,000 held-out digits): an "
             "LSTM with 128 hidden units reads the 28 rows from top to bottom, one row per step, keeping a memory "
             "(its cell state) from row to row; its last hidden state decides the digit.")
    register("digits_gru_attention", "GRU with attention over the rows", "digit classification",
             "engine.models.sequence_digits:load_gru_attention",
             "A recurrent network, trained by the engine on real MNIST digits (97.95% on 2,000 held-out digits): a "
             "GRU with 64 hidden units reads the digit row by row, and attention weighs its 28 outputs (the "
             "weights sum to 1) to show which rows the decision leaned on.")


_register_builtins()


def default_cache_dir() -> Path:
    """``$CNN_VIS_DATA_DIR/cache`` (``data/cache`` by default)."""
    return Path(os.environ.get("CNN_VIS_DATA_DIR", "data")) / "cache"


def list_models() -> list[ModelEntry]:
    """Every built-in model, in registration order, without loading any."""
    return list(_ENTRIES.values())


def get_entry(model_id: str) -> ModelEntry:
    """The entry for ``model_id``; KeyError naming the known ids if there is none."""
    try:
        return _ENTRIES[model_id]
    except KeyError:
        raise KeyError(f"no built-in model '{model_id}'; known: {', '.join(_ENTRIES) or 'none'}") from None


def _resolve_loader(entry: ModelEntry) -> Loader:
    module_name, _, function_name = entry.loader.partition(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    if not callable(loader):
        raise TypeError(f"loader {entry.loader} of model '{entry.id}' is not a function")
    return loader


def load_model(model_id: str, cache_dir: str | Path | None = None) -> ModelBundle:
    """The model ``model_id``, loaded on first use and then shared (one load per model and cache dir).

    Threads asking at the same time wait for a single load. Treat the returned bundle as read-only.
    """
    entry = get_entry(model_id)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = (model_id, cache.resolve())
    bundle = _LOADED.get(key)
    if bundle is not None:
        return bundle
    with _GUARD:
        lock = _LOCKS.setdefault(model_id, threading.Lock())
    with lock:
        bundle = _LOADED.get(key)
        if bundle is None:
            loader = _resolve_loader(entry)
            takes_cache = "cache_dir" in inspect.signature(loader).parameters
            bundle = loader(cache_dir=cache) if takes_cache else loader()
            if bundle.id != model_id:
                raise ValueError(f"loader {entry.loader} returned model '{bundle.id}', expected '{model_id}'")
            _LOADED[key] = bundle
    return bundle


def clear_cache() -> None:
    """Forget loaded models (tests; or to pick up new weights)."""
    with _GUARD:
        _LOADED.clear()


def prepare_models(cache_dir: str | Path | None = None) -> list[str]:
    """Load every built-in model once, converting and caching weights where needed; returns their ids."""
    return [load_model(entry.id, cache_dir).id for entry in list_models()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.models.registry", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the built-in models")
    prepare = commands.add_parser("prepare", help="convert and cache every built-in model's weights")
    prepare.add_argument("--cache-dir", type=Path, default=None, help="default: $CNN_VIS_DATA_DIR/cache")
    args = parser.parse_args(argv)
    if args.command == "list":
        for entry in list_models():
            print(f"{entry.id:24} {entry.task:28} {entry.name}")
    else:
        for model_id in prepare_models(args.cache_dir):
            print(f"ready: {model_id}")


if __name__ == "__main__":
    main()
