"""GET /api/health, the error format, and the docs."""

from __future__ import annotations


def test_health_says_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_unknown_path_is_json_404(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()


def test_openapi_schema_lists_health(client):
    schema = client.get("/openapi.json").json()
    assert "/api/health" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_home_page_answers(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_oversized_body_is_413_before_reading(client, settings):
    too_big = b"0" * (settings.max_upload_bytes + 2 * 1024 * 1024)
    response = client.post("/api/arithmetic/output-size", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "bytes" in response.json()["detail"]


def test_oversized_streamed_body_is_413(client, settings):
    def chunks():  # no Content-Length: counted while it streams
        for _ in range(4):
            yield b"0" * (settings.max_upload_bytes // 2 + 1024 * 1024)

    response = client.post("/api/arithmetic/output-size", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unexpected_errors_are_json_without_a_traceback(unexpected_error):
    response = unexpected_error
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "secret internals" not in detail and "Traceback" not in detail and "bug" in detail


def test_every_api_operation_is_documented(client):
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/") or path.startswith("/api/training"):
            continue
        for method, operation in operations.items():
            assert operation.get("description") or operation.get("summary"), (method, path)
            assert operation["operationId"], (method, path)


def test_docs_page_is_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "/docs-assets/swagger-ui-bundle.js" in page.text
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
