"""The Redis foundation: the setting, the connection's errors (503 naming the URL, never the password), and the
test server fixture itself."""

from __future__ import annotations

import pytest
import redis

from app.core.config import Settings, load_settings
from app.services.redis_client import RedisUnavailableError, connect, safe_url
from tests import redis_server
from tests.redis_server import free_port, running_redis


def test_the_redis_url_setting_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNN_VIS_REDIS_URL", "redis://redis-host:6379/0")
    assert load_settings().redis_url == "redis://redis-host:6379/0"
    monkeypatch.setenv("CNN_VIS_REDIS_URL", "")
    assert load_settings().redis_url is None
    assert Settings.model_fields["redis_url"].description


def test_a_url_that_is_not_redis_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNN_VIS_REDIS_URL", "http://redis-host:6379")
    with pytest.raises(ValueError, match=r"CNN_VIS_REDIS_URL.*redis://"):
        load_settings()


def test_passwords_never_reach_a_message():
    assert safe_url("redis://:s3cret@db.example:6380/2") == "redis://:***@db.example:6380/2"
    assert safe_url("redis://db.example:6379/0") == "redis://db.example:6379/0"


def test_an_unreachable_redis_is_a_clear_error():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as caught:
        connect(url)
    assert caught.value.status_code == 503
    assert "127.0.0.1" in caught.value.message and "s3cret" not in caught.value.message
    assert "redis-server is running" in caught.value.message


def test_the_fixture_gives_a_working_empty_server(fresh_redis):
    client = connect(fresh_redis)
    assert client.dbsize() == 0
    client.set("key", b"value")
    assert client.get("key") == b"value"
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"


def test_the_fixture_flushes_between_tests(fresh_redis):
    assert redis.Redis.from_url(fresh_redis).dbsize() == 0


def test_without_redis_server_the_tests_skip_saying_how_to_install_it(monkeypatch):
    monkeypatch.setattr(redis_server, "redis_server_binary", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"), running_redis():
        pass


def test_the_worker_command_needs_a_reachable_redis(monkeypatch, tmp_path, capsys):
    from app import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNN_VIS_REDIS_URL", raising=False)
    cli.get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit, match="set CNN_VIS_REDIS_URL"):
            cli.main(["worker", "--burst"])
        monkeypatch.setenv("CNN_VIS_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        cli.get_settings.cache_clear()
        with pytest.raises(SystemExit, match=r"cannot be used, so connecting failed.*redis-server is running"):
            cli.main(["worker", "--burst"])
    finally:
        cli.get_settings.cache_clear()
