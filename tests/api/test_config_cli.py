"""Settings from the environment and the command line."""

from __future__ import annotations

import pytest

from app import cli
from app.core.config import Settings, load_settings


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """``environ({...})``: the settings read with exactly these CNN_VIS_* variables (and no .env file)."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's

    def read(values: dict[str, str]) -> Settings:
        import os

        for name in [n for n in os.environ if n.startswith("CNN_VIS_")]:
            monkeypatch.delenv(name)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return read


def test_settings_read_prefixed_environment(environ, tmp_path):
    settings = environ({"CNN_VIS_DATA_DIR": str(tmp_path), "CNN_VIS_PORT": "9001",
                        "CNN_VIS_CORS_ORIGINS": "http://a.test, http://b.test", "OTHER": "x"})
    assert settings.data_dir == tmp_path
    assert settings.port == 9001
    assert settings.cors_origins == ["http://a.test", "http://b.test"]


def test_a_dot_env_file_is_read_and_the_environment_wins(environ, tmp_path):
    (tmp_path / ".env").write_text("CNN_VIS_PORT=9002\nCNN_VIS_WORKERS=3\nCNN_VIS_ALLOWED_HOSTS=lab.example.org\n")
    settings = environ({"CNN_VIS_WORKERS": "2"})
    assert (settings.port, settings.workers) == (9002, 2)
    assert settings.allowed_hosts == ["lab.example.org"]


def test_bad_setting_names_the_variable(environ):
    with pytest.raises(ValueError, match="CNN_VIS_PORT"):
        environ({"CNN_VIS_PORT": "eighty"})


def test_the_lecturer_token_and_quotas_come_from_the_environment(environ):
    settings = environ({"CNN_VIS_ADMIN_TOKEN": "a-long-enough-secret", "CNN_VIS_QUOTA_MODELS_PER_OWNER": "3",
                        "CNN_VIS_QUOTA_MODEL_BYTES_TOTAL": "1000"})
    assert settings.admin_token == "a-long-enough-secret" and "a-long-enough-secret" not in repr(settings)
    assert settings.quota_models_per_owner == 3 and settings.quota_model_bytes_total == 1000
    assert environ({"CNN_VIS_ADMIN_TOKEN": " "}).admin_token is None  # empty: no lecturer
    assert environ({}).admin_token is None
    with pytest.raises(ValueError, match="CNN_VIS_ADMIN_TOKEN"):  # a guessable lecturer token is refused
        environ({"CNN_VIS_ADMIN_TOKEN": "secret"})


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
