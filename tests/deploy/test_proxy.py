"""The deployment files: docker-compose.yml and the nginx proxy it runs, checked without a Docker engine.

nginx itself (Debian's package, installed by `make install-test` where it may) runs the shipped site
configuration in front of a real uvicorn server; the tests skip where nginx is absent."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.cli import build_parser
from app.core.config import ENV_PREFIX, Settings
from tests.api.live_server import REPO, live_server, wait_until_healthy
from tests.redis_server import running_redis

SITE = REPO / "deploy" / "nginx" / "cnn-visualiser.conf"
UPSTREAM = REPO / "deploy" / "nginx" / "upstream.conf"
COMPOSE = REPO / "docker-compose.yml"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def test_the_compose_file_names_real_settings_files_and_services():
    text = COMPOSE.read_text()
    names = re.findall(rf"^ +{ENV_PREFIX}(\w+):", text, re.MULTILINE)
    assert "DATA_DIR" in names
    for name in names:  # every CNN_VIS_ variable it sets is a setting
        assert name.lower() in Settings.model_fields, name
    for path in re.findall(r"\./(deploy/[\w./-]+):", text):  # every file it mounts exists
        assert (REPO / path).is_file(), path
    services = set(re.findall(r"^  ([\w-]+):", text.split("\nservices:\n", 1)[1], re.MULTILINE))
    upstreams = set(re.findall(r"server ([\w-]+):8000", UPSTREAM.read_text()))
    assert upstreams and upstreams <= services  # the proxy sends to the app replicas the file defines
    replicas = set(re.findall(r"^  ([\w-]+): \*app$", text, re.MULTILINE))
    assert replicas == upstreams  # the proxy sends to every replica, and only to them
    assert "cnn-vis-data:/data" in text.split("\nservices:\n")[0]  # every replica (and the worker) shares /data


def compose_service(name: str) -> str:
    """The text of one service of docker-compose.yml."""
    services = COMPOSE.read_text().split("\nservices:\n", 1)[1].split("\nvolumes:\n")[0]
    found = re.search(rf"^  {name}:\n((?:    .*\n|\n)*)", services + "\n", re.MULTILINE)
    assert found, f"docker-compose.yml has no service {name}"
    return found.group(1)


def test_the_compose_file_runs_a_worker_and_the_redis_every_process_shares():
    text = COMPOSE.read_text()
    redis_url = re.search(rf"{ENV_PREFIX}REDIS_URL: (\S+)", text).group(1)
    host = re.match(r"redis://([\w-]+):6379/\d+$", redis_url)
    assert host, redis_url
    assert "image: redis:" in compose_service(host.group(1))  # the URL names the compose file's Redis
    worker = compose_service("worker")
    assert "<<: *app" in worker  # the replicas' settings: same data directory, same Redis
    command = json.loads(re.search(r"command: (\[.*\])", worker).group(1))
    assert command == ["cnn-visualiser", "worker"]
    parsed = build_parser().parse_args(command[1:])  # a command the CLI knows
    assert parsed.command == "worker"


def test_the_compose_files_redis_keeps_what_it_stored_across_a_restart(tmp_path):
    """The options docker-compose.yml gives its Redis, on a real redis-server: a restart loses nothing."""
    options = json.loads(re.search(r"command: (\[\"redis-server\".*\])", COMPOSE.read_text()).group(1))[1:]
    with running_redis(options=options, directory=tmp_path) as url:
        client = redis.Redis.from_url(url)
        client.set("cnn-vis:kept", "yes")
        client.close()
    with running_redis(options=options, directory=tmp_path) as url:
        client = redis.Redis.from_url(url)
        assert client.get("cnn-vis:kept") == b"yes"
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx with the shipped site configuration (its port and upstream pointed at a local server); yields the
    proxy's port."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light): proxy tests skipped")
    work = tmp_path_factory.mktemp("nginx")
    work.chmod(0o777)  # nginx's workers may run as another user
    with live_server({"CNN_VIS_DATA_DIR": str(tmp_path_factory.mktemp("data"))}) as app_port:
        port = free_port()
        (work / "upstream.conf").write_text(UPSTREAM.read_text().split("upstream")[0] + "upstream cnn_visualiser {\n"
                                            f"    server 127.0.0.1:{app_port};\n    keepalive 4;\n}}\n")
        site = SITE.read_text().replace("/etc/nginx/cnn-visualiser/upstream.conf", str(work / "upstream.conf"))
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        site = site.replace("client_header_timeout 10s;", "client_header_timeout 2s;")  # a short test
        (work / "site.conf").write_text(site)
        (work / "nginx.conf").write_text(
            f"daemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\nworker_processes 1;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {work}/body;\n  proxy_temp_path {work}/proxy;\n"
            f"  fastcgi_temp_path {work}/fastcgi;\n  uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n"
            f"  include {work}/site.conf;\n}}\n")
        check = subprocess.run([NGINX, "-t", "-p", str(work), "-c", str(work / "nginx.conf")], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([NGINX, "-p", str(work), "-c", str(work / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_healthy(port, "nginx", seconds=10, log=work / "error.log")
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_the_shipped_site_sets_the_timeouts_a_public_server_needs():
    text = SITE.read_text()
    for directive in ("client_header_timeout 10s;", "client_body_timeout 30s;", "client_max_body_size 601m;",
                      "proxy_buffering off;", "proxy_set_header Host $http_host;"):
        assert directive in text, directive


def test_the_proxy_admits_the_largest_upload_the_app_accepts():
    """client_max_body_size follows CNN_VIS_MAX_MODEL_BYTES's default (plus the multipart envelope the app allows)."""
    from app.main import MULTIPART_SLACK

    size = re.search(r"client_max_body_size (\d+)m;", SITE.read_text())
    assert size, "the site sets no client_max_body_size in MiB"
    assert int(size.group(1)) * 1024 * 1024 >= Settings.model_fields["max_model_bytes"].default + MULTIPART_SLACK


def test_requests_pass_through_the_proxy_with_their_host(proxy):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy}/api/health", timeout=5) as answer:
        assert answer.status == 200
    request = urllib.request.Request(f"http://127.0.0.1:{proxy}/api/health", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # the app still sees (and refuses) a foreign Host
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400


def test_a_client_sending_its_headers_too_slowly_is_cut_off(proxy):
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as client:
        client.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        start = time.monotonic()
        while client.recv(4096):
            pass
        assert time.monotonic() - start < 6  # closed after client_header_timeout (2 s here), not held for ever


def test_server_sent_events_are_not_buffered(proxy):
    """The first bytes of a training job's event stream arrive at once, while the job still runs (two guards: the
    app's X-Accel-Buffering: no header, and the site's proxy_buffering off for the events paths)."""
    import json

    body = json.dumps({"epochs": 3, "train_size": 2000, "test_size": 1000}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{proxy}/api/training/jobs", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        job = json.load(answer)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as client:
        client.sendall(f"GET {job['events_url']} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"retry: 2000" not in received:
            chunk = client.recv(4096)
            assert chunk, "the stream ended"
            received += chunk
    assert time.monotonic() - start < 3  # buffered, it would wait for kilobytes of events or the job's end
    stop = urllib.request.Request(f"http://127.0.0.1:{proxy}/api/training/jobs/{job['id']}", method="DELETE",
                                  headers={"X-Owner-Token": job["owner_token"]})
    urllib.request.urlopen(stop, timeout=10).close()
