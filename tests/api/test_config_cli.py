"""Settings from the environment and the command line."""

from __future__ import annotations

import pytest

from app import cli
from app.core.config import Settings


def test_settings_read_prefixed_environment(tmp_path):
    settings = Settings.from_env({"CNN_VIS_DATA_DIR": str(tmp_path), "CNN_VIS_PORT": "9001",
                                  "CNN_VIS_CORS_ORIGINS": "http://a.test, http://b.test", "OTHER": "x"})
    assert settings.data_dir == tmp_path
    assert settings.port == 9001
    assert settings.cors_origins == ["http://a.test", "http://b.test"]


def test_bad_setting_names_the_variable():
    with pytest.raises(ValueError, match="CNN_VIS_PORT"):
        Settings.from_env({"CNN_VIS_PORT": "eighty"})


def test_the_lecturer_token_and_quotas_come_from_the_environment():
    settings = Settings.from_env({"CNN_VIS_ADMIN_TOKEN": "a-long-enough-secret", "CNN_VIS_QUOTA_MODELS_PER_OWNER": "3",
                                  "CNN_VIS_QUOTA_MODEL_BYTES_TOTAL": "1000"})
    assert settings.admin_token == "a-long-enough-secret" and "a-long-enough-secret" not in repr(settings)
    assert settings.quota_models_per_owner == 3 and settings.quota_model_bytes_total == 1000
    assert Settings.from_env({"CNN_VIS_ADMIN_TOKEN": " "}).admin_token is None  # empty: no lecturer
    assert Settings.from_env({}).admin_token is None
    with pytest.raises(ValueError, match="CNN_VIS_ADMIN_TOKEN"):  # a guessable lecturer token is refused
        Settings.from_env({"CNN_VIS_ADMIN_TOKEN": "secret"})


def test_serve_passes_arguments_to_uvicorn(monkeypatch):
    calls = {}
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.update(target=target, **kwargs))
    cli.main(["serve", "--host", "0.0.0.0", "--port", "8123", "--workers", "2"])
    assert calls["target"] == "app.main:create_app" and calls["factory"] is True
    assert (calls["host"], calls["port"], calls["workers"]) == ("0.0.0.0", 8123, 2)


def test_cli_needs_a_command():
    with pytest.raises(SystemExit):
        cli.main([])


def test_malloc_arenas_are_capped_on_glibc():
    import platform

    from app.core.memory import limit_malloc_arenas

    applied = limit_malloc_arenas(2)
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert limit_malloc_arenas(0) is False


def test_cors_origins_from_settings(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    allowed = settings.model_copy(update={"cors_origins": ["http://lecture.example"]})
    with TestClient(create_app(allowed)) as client:
        preflight = client.options("/api/health", headers={"Origin": "http://lecture.example",
                                                            "Access-Control-Request-Method": "GET"})
        assert preflight.headers["access-control-allow-origin"] == "http://lecture.example"
        other = client.get("/api/health", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(settings)) as client:  # no origins configured: no CORS headers at all
        assert "access-control-allow-origin" not in client.get("/api/health", headers={"Origin": "http://a.b"}).headers
