"""Browsers and this server: cross-site writes are refused (403), unknown Host names too (400, DNS rebinding), and
every response carries the security headers (CSP, nosniff, Referrer-Policy, X-Frame-Options)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings, load_settings, normalize_host
from app.main import create_app
from app.security import CONTENT_SECURITY_POLICY, parse_origin

SPEC = {"input_shape": [1, 8, 8], "nodes": [{"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3}]}
ANALYZE = "/api/architecture/analyze"


def client_for(settings: Settings, base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(settings), base_url=base_url, raise_server_exceptions=False)


@pytest.fixture
def web(settings) -> Iterator[TestClient]:
    """A client for an app that also lists one CORS origin, http://lecture.example."""
    with client_for(settings.model_copy(update={"cors_origins": ["http://lecture.example"]})) as client:
        yield client


# --- cross-site requests ---------------------------------------------------------------------------------------

def test_a_post_from_a_foreign_origin_is_a_403_naming_it_and_the_setting(web):
    response = web.post(ANALYZE, json=SPEC, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "http://evil.example" in detail and "CNN_VIS_CORS_ORIGINS" in detail


def test_a_delete_from_a_foreign_origin_is_a_403(web):
    response = web.delete("/api/models/tiny", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "https://evil.example" in response.json()["detail"]


def test_a_multipart_upload_from_a_foreign_origin_is_refused(web):
    """What a no-cors form post on another site sends: refused before the model is stored."""
    response = web.post("/api/models", files={"file": ("m.onnx", b"\x08\x07", "application/octet-stream")},
                        headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and "http://evil.example" in response.json()["detail"]


def test_the_servers_own_origin_may_post(web):
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://testserver"}).status_code == 200
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://TestServer:80"}).status_code == 200
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://testserver.evil.example"}).status_code == 403


def test_the_own_origin_includes_the_port_and_scheme(settings):
    with client_for(settings, base_url="http://localhost:8000") as client:
        assert client.post(ANALYZE, json=SPEC, headers={"Origin": "http://localhost:8000"}).status_code == 200
        assert client.post(ANALYZE, json=SPEC, headers={"Origin": "http://localhost:9999"}).status_code == 403
        assert client.post(ANALYZE, json=SPEC, headers={"Origin": "https://localhost:8000"}).status_code == 403


def test_a_listed_cors_origin_may_post_and_gets_cors_headers(web):
    response = web.post(ANALYZE, json=SPEC, headers={"Origin": "http://lecture.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://lecture.example"
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://lecture.example:8080"}).status_code == 403


def test_a_request_without_origin_or_referer_is_accepted(web):
    """curl and scripts send neither header."""
    assert web.post(ANALYZE, json=SPEC).status_code == 200
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://evil.example"}).status_code == 403


def test_origin_null_is_foreign(web):
    response = web.post(ANALYZE, json=SPEC, headers={"Origin": "null"})
    assert response.status_code == 403 and "Origin: null" in response.json()["detail"]


def test_a_foreign_referer_without_origin_is_refused_and_an_own_one_accepted(web):
    response = web.post(ANALYZE, json=SPEC, headers={"Referer": "http://evil.example/page?x=1"})
    assert response.status_code == 403 and "http://evil.example" in response.json()["detail"]
    assert "page?x=1" not in response.json()["detail"]
    assert web.post(ANALYZE, json=SPEC, headers={"Referer": "http://testserver/arithmetic"}).status_code == 200


def test_reads_and_preflights_from_other_origins_are_not_refused(web):
    assert web.get("/api/health", headers={"Origin": "http://evil.example"}).status_code == 200
    assert web.post(ANALYZE, json=SPEC, headers={"Origin": "http://evil.example"}).status_code == 403
    preflight = web.options(ANALYZE, headers={"Origin": "http://lecture.example",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type, x-owner-token"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://lecture.example"


# --- the Host header --------------------------------------------------------------------------------------------

def test_an_unknown_host_is_a_400_naming_it_and_the_setting(web):
    response = web.get("/api/health", headers={"Host": "evil.example:8000"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "'evil.example'" in detail and "CNN_VIS_ALLOWED_HOSTS" in detail


def test_the_default_hosts_are_loopback_and_the_bound_address(tmp_path):
    assert Settings().allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(host="0.0.0.0").allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(host="::").allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(host="10.1.2.3").allowed_hosts == ["localhost", "127.0.0.1", "[::1]", "10.1.2.3"]
    default = Settings(data_dir=tmp_path, preload=False)
    with client_for(default) as client:  # TestClient's own host is not among the defaults
        assert client.get("/api/health").status_code == 400
    for base in ("http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000"):
        with client_for(default, base_url=base) as client:
            assert client.get("/api/health").status_code == 200, base


def test_allowed_hosts_from_the_environment_ignore_case_and_port(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("CNN_VIS_ALLOWED_HOSTS", "Lab.Example.org:8000, 10.0.0.5 ,::1, .campus.edu")
    settings = load_settings()
    assert settings.allowed_hosts == ["lab.example.org", "10.0.0.5", "[::1]", ".campus.edu"]


def test_a_listed_host_and_subdomains_of_a_dot_entry_are_answered(settings):
    listed = settings.model_copy(update={"allowed_hosts": ["lab.example.org", ".campus.edu"]})
    with client_for(listed) as client:
        for host, status in [("lab.example.org:8000", 200), ("LAB.example.org", 200), ("campus.edu", 200),
                             ("cv.campus.edu", 200), ("evilcampus.edu", 400), ("example.org", 400)]:
            assert client.get("/api/health", headers={"Host": host}).status_code == status, host


def test_a_star_allows_every_host(settings):
    with client_for(settings.model_copy(update={"allowed_hosts": ["*"]})) as client:
        assert client.get("/api/health", headers={"Host": "anything.example"}).status_code == 200
    with client_for(settings) as client:
        assert client.get("/api/health", headers={"Host": "anything.example"}).status_code == 400


def test_host_and_origin_parsing():
    assert normalize_host("[::1]:8000") == "[::1]" and normalize_host("Example.ORG.:80") == "example.org"
    assert parse_origin("http://Localhost:8000/x") == ("http", "localhost", 8000)
    assert parse_origin("https://a.example") == ("https", "a.example", 443)
    assert parse_origin("null") is None and parse_origin("http://a:notaport") is None
    assert parse_origin("file:///tmp/x.html") is None


# --- security headers -------------------------------------------------------------------------------------------

HEADERS = {"content-security-policy": CONTENT_SECURITY_POLICY, "x-content-type-options": "nosniff",
           "referrer-policy": "same-origin", "x-frame-options": "SAMEORIGIN"}


def assert_secured(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code, response.request.url)


def test_the_policy_allows_only_the_apps_own_scripts_and_styles():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and directives["object-src"] == "'none'"


def test_security_headers_on_a_page_json_a_static_file_and_errors(web):
    for response in (web.get("/"), web.get("/api/health"), web.get("/static/css/main.css"),
                     web.get("/api/no-such-thing"), web.get("/no-such-page"),
                     web.post(ANALYZE, json={"nodes": "not a list"})):
        assert_secured(response)


def test_security_headers_on_the_body_limits_413_and_on_refusals(web, settings):
    too_big = web.post("/api/models/tiny/predict", content=b"\x93NUMPY" + b"0" * (settings.max_upload_bytes * 2),
                       headers={"Content-Type": "application/x-npy"})
    assert too_big.status_code == 413
    assert_secured(too_big)
    assert_secured(web.get("/api/health", headers={"Host": "evil.example"}))
    assert_secured(web.post(ANALYZE, json=SPEC, headers={"Origin": "http://evil.example"}))


def test_security_headers_on_a_500(unexpected_error):
    response = unexpected_error
    assert response.status_code == 500
    assert_secured(response)
