"""`cnn-visualiser serve` and the allowed hosts: the bound address is answered, and binding to every interface
while answering only to loopback names prints how to let other machines in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import cli
from app.core.config import get_settings


@pytest.fixture
def uvicorn_calls(monkeypatch) -> Iterator[dict]:
    import uvicorn

    calls: dict = {}

    def run(target: str, **kwargs) -> None:  # what the app built now would answer to
        calls.update(target=target, allowed_hosts=get_settings().allowed_hosts, **kwargs)

    monkeypatch.setattr(uvicorn, "run", run)
    for name in ("CNN_VIS_HOST", "CNN_VIS_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_every_interface_with_loopback_hosts_prints_how_to_allow_others(uvicorn_calls, capsys):
    cli.main(["serve", "--host", "0.0.0.0", "--port", "8123"])
    err = capsys.readouterr().err
    assert "CNN_VIS_ALLOWED_HOSTS=localhost,127.0.0.1," in err and "--host 0.0.0.0 --port 8123" in err
    assert "get 400" in err


def test_no_hint_when_hosts_are_listed_or_the_server_is_local(uvicorn_calls, monkeypatch, capsys):
    cli.main(["serve", "--port", "8123"])
    assert "ALLOWED_HOSTS" not in capsys.readouterr().err
    cli.main(["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert "ALLOWED_HOSTS" in capsys.readouterr().err
    monkeypatch.setenv("CNN_VIS_ALLOWED_HOSTS", "lab-pc.example.edu")
    cli.main(["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert "ALLOWED_HOSTS" not in capsys.readouterr().err


def test_the_bound_address_reaches_the_app_and_is_answered(uvicorn_calls, monkeypatch):
    """uvicorn builds the app from the environment in each worker: `--host` must get there."""
    cli.main(["serve", "--host", "10.1.2.3", "--port", "8123"])
    assert uvicorn_calls["host"] == "10.1.2.3" and "10.1.2.3" in uvicorn_calls["allowed_hosts"]
    assert "10.1.2.3" not in get_settings().allowed_hosts  # the environment is as it was after serve() returns
