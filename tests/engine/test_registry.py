"""The built-in model registry: listing is free, loading happens once, adding a model is one line."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.graph import Graph
from engine.models import registry
from engine.models.bundle import ModelBundle, Preprocessing

load_calls: list[tuple[str, Path | None]] = []


def _tiny_bundle(model_id: str) -> ModelBundle:
    graph = Graph({"input_shape": [4], "nodes": [{"id": "fc", "op": "linear", "out_features": 2}]})
    return ModelBundle(id=model_id, name="tiny", task="test", graph=graph, params=graph.init_params(0),
                       labels=["a", "b"], preprocessing=Preprocessing(1, 1, (0.0,), (1.0,)), source="made here")


def slow_loader() -> ModelBundle:
    """No cache_dir parameter: called without one. Slow, to make threads overlap."""
    load_calls.append(("test_slow", None))
    time.sleep(0.05)
    return _tiny_bundle("test_slow")


def caching_loader(cache_dir: Path) -> ModelBundle:
    load_calls.append(("test_cache", cache_dir))
    return _tiny_bundle("test_cache")


def wrong_id_loader() -> ModelBundle:
    return _tiny_bundle("something_else")


@pytest.fixture
def entries(monkeypatch):
    """Register test models for one test only, and start from an empty load cache."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_LOADED", {})
    load_calls.clear()
    registry.register("test_slow", "Slow", "test", f"{__name__}:slow_loader")
    registry.register("test_cache", "Cache", "test", f"{__name__}:caching_loader", "uses a cache dir")
    registry.register("test_wrong", "Wrong", "test", f"{__name__}:wrong_id_loader")
    yield


def test_efficientnet_is_listed_without_loading_it():
    entries = {e.id: e for e in registry.list_models()}
    assert "efficientnet_lite0" in entries
    entry = entries["efficientnet_lite0"]
    assert entry.task == "imagenet classification" and entry.name == "EfficientNet-Lite0"
    assert entry.as_dict() == {"id": "efficientnet_lite0", "name": "EfficientNet-Lite0",
                               "task": "imagenet classification", "description": entry.description}


def test_loads_once_even_when_threads_ask_together(entries):
    results: list[ModelBundle] = []
    threads = [threading.Thread(target=lambda: results.append(registry.load_model("test_slow"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert load_calls == [("test_slow", None)]
    assert registry.load_model("test_slow") is results[0]


def test_loader_gets_the_cache_dir_when_it_takes_one(entries, tmp_path, monkeypatch):
    registry.load_model("test_cache", cache_dir=tmp_path)
    assert load_calls == [("test_cache", tmp_path)]
    monkeypatch.setenv("CNN_VIS_DATA_DIR", str(tmp_path / "data"))
    registry.load_model("test_cache")
    assert load_calls[-1] == ("test_cache", tmp_path / "data" / "cache")
    assert [e.id for e in registry.list_models()][-3:] == ["test_slow", "test_cache", "test_wrong"]


def test_errors_name_the_problem(entries):
    with pytest.raises(KeyError, match="no built-in model 'nope'; known: efficientnet_lite0"):
        registry.load_model("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("test_slow", "again", "test", f"{__name__}:slow_loader")
    with pytest.raises(ValueError, match="module:function"):
        registry.register("test_bad", "bad", "test", "no_colon_here")
    with pytest.raises(ValueError, match="returned model 'something_else', expected 'test_wrong'"):
        registry.load_model("test_wrong")


def test_prepare_command_lists_and_loads(entries, monkeypatch, capsys):
    monkeypatch.setattr(registry, "_ENTRIES", {k: v for k, v in registry._ENTRIES.items() if k.startswith("test_c")})
    registry.main(["list"])
    assert "test_cache" in capsys.readouterr().out
    registry.main(["prepare", "--cache-dir", "somewhere"])
    assert capsys.readouterr().out == "ready: test_cache\n"
    assert load_calls == [("test_cache", Path("somewhere"))]
