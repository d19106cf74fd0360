"""Over the API: an ONNX upload that names another file (external data) is a 422 naming the node, whether the file
exists or not, and nothing of that file is ever served back as the model's weights."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")

from tests.app.test_onnx_external_data import PLACES, SECRET


@pytest.mark.parametrize("place", ["initializer", "Constant value", "ConstantOfShape value", "If subgraph"])
@pytest.mark.parametrize("location", ["secret.bin", "/etc/passwd", "../secret.bin", "missing.bin", "link.bin"])
def test_an_upload_naming_another_file_is_a_422_and_reads_nothing(client, tmp_path, monkeypatch, place, location):
    (tmp_path / "secret.bin").write_bytes(SECRET)
    work = tmp_path / "work"
    work.mkdir()
    (work / "secret.bin").write_bytes(SECRET)
    (work / "link.bin").symlink_to(tmp_path / "secret.bin")
    monkeypatch.chdir(work)  # `make run` serves from the repository: relative paths used to resolve here
    build, where = PLACES[place]
    before = client.get("/api/models").json()["models"]
    answer = client.post("/api/models", files={"file": ("leak.onnx", build(location), "application/octet-stream")})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert where in body["detail"] and "external data" in body["detail"]
    assert location not in answer.text
    assert any(where in problem for problem in body["problems"])
    assert client.get("/api/models").json()["models"] == before  # nothing stored
