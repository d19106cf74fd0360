"""Owners of uploaded models (issue 11): private uploads, the owner cookie and X-Owner-Token, the lecturer's
X-Admin-Token (share, delete anything, see everything), and the storage quotas (409 per person, 507 in all)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.deps import get_model_store
from app.core.config import Settings
from app.main import create_app
from app.services.models import ModelStore
from app.services.owners import OWNER_COOKIE, hash_token
from tests.api.routes.test_models_upload import small_onnx, upload

ADMIN = "lecturer-secret-0123456789"
LECTURER = {"X-Admin-Token": ADMIN}

Clients = Callable[..., TestClient]


@pytest.fixture
def make_client(settings: Settings, store: ModelStore) -> Iterator[Clients]:
    """``make_client(**setting_changes)``: a new browser (its own cookie jar) on one app, whose settings are the
    test settings with the lecturer token ADMIN and the given changes (the first call's changes hold for all)."""
    apps: list = []
    clients: list[TestClient] = []

    def make(**changes) -> TestClient:
        if not apps:
            changed = settings.model_copy(update={"admin_token": ADMIN, **changes})
            app = create_app(changed)
            app.dependency_overrides[get_model_store] = lambda: store
            apps.append(app)
        clients.append(TestClient(apps[0], raise_server_exceptions=False))
        if len(clients) == 1:
            clients[0].__enter__()  # the app's lifespan builds its services once, for every browser on it
        return clients[-1]

    yield make
    if clients:
        clients[0].__exit__(None, None, None)
    for client in clients[1:]:
        client.close()


def listed(client: TestClient, headers: dict | None = None) -> dict[str, dict]:
    return {m["id"]: m for m in client.get("/api/models", headers=headers or {}).json()["models"]}


def test_an_upload_is_seen_and_deleted_by_its_owner_only(make_client):
    alice, bob = make_client(), make_client()
    created = upload(alice, small_onnx(seed=1))
    assert created.status_code == 201, created.text
    model_id = created.json()["id"]
    assert created.json()["owned"] is True and created.json()["shared"] is False
    assert created.json()["owner_token"] == alice.cookies[OWNER_COOKIE]

    assert listed(alice)[model_id]["owned"] is True
    assert model_id not in listed(bob) and "tiny" in listed(bob)
    assert listed(bob)["tiny"]["owned"] is False
    unseen = bob.get(f"/api/models/{model_id}")  # private: as if it did not exist, naming only what bob may see
    assert unseen.status_code == 404 and model_id in unseen.json()["detail"]
    assert "known models: tiny" in unseen.json()["detail"] and unseen.json()["detail"].count("onnx-") == 1
    assert bob.post(f"/api/models/{model_id}/predict", content=b"").status_code == 404

    refused = bob.delete(f"/api/models/{model_id}")
    assert refused.status_code == 403
    assert "uploaded by someone else" in refused.json()["detail"] and "X-Admin-Token" in refused.json()["detail"]
    assert alice.get(f"/api/models/{model_id}").status_code == 200

    assert alice.delete(f"/api/models/{model_id}").status_code == 204
    assert model_id not in listed(alice)


def test_the_owner_cookie_is_httponly_lax_and_secure_only_over_https(make_client):
    browser = make_client()
    cookie = upload(browser, small_onnx(seed=1)).headers["set-cookie"]
    assert cookie.startswith(f"{OWNER_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/" and int(attributes["max-age"].split("=")[1]) >= 30 * 24 * 3600
    assert "secure" not in attributes
    # the cookie is sent back: the next upload neither sets it again nor changes the owner
    again = upload(browser, small_onnx(seed=2))
    assert "set-cookie" not in again.headers and again.json()["owner_token"] == browser.cookies[OWNER_COOKIE]

    https = make_client()
    https.base_url = https.base_url.copy_with(scheme="https")
    assert "secure" in https.get("/upload").headers["set-cookie"].lower()


def test_a_page_load_gives_a_browser_its_identity_once(make_client):
    browser = make_client()
    first = browser.get("/upload")
    assert first.status_code == 200 and OWNER_COOKIE in first.headers["set-cookie"]
    token = browser.cookies[OWNER_COOKIE]
    assert "set-cookie" not in browser.get("/training").headers
    assert upload(browser, small_onnx(seed=1)).json()["owner_token"] == token


def test_a_rest_client_owns_its_uploads_with_the_owner_token_header(make_client):
    rest = make_client()
    first = upload(rest, small_onnx(seed=1))
    token = first.json()["owner_token"]
    rest.cookies.clear()  # a REST client keeps no cookies: the header is its identity
    mine = {"X-Owner-Token": token}
    assert first.json()["id"] not in listed(rest)
    assert listed(rest, mine)[first.json()["id"]]["owned"] is True
    second = rest.post("/api/models", files={"file": ("b.onnx", small_onnx(seed=2))}, headers=mine)
    assert second.status_code == 201 and second.json()["owner_token"] == token
    assert "set-cookie" in second.headers  # harmless for a REST client; a browser without a cookie needs it
    rest.cookies.clear()
    assert rest.delete(f"/api/models/{first.json()['id']}").status_code == 403
    assert rest.delete(f"/api/models/{first.json()['id']}", headers=mine).status_code == 204

    # the header wins over the cookie: a browser sending another token acts as that token's owner
    browser = make_client()
    browser.get("/upload")
    assert browser.delete(f"/api/models/{second.json()['id']}").status_code == 403
    assert browser.delete(f"/api/models/{second.json()['id']}", headers=mine).status_code == 204


def test_a_malformed_owner_token_header_is_a_422_saying_what_to_send(make_client):
    response = make_client().get("/api/models", headers={"X-Owner-Token": "short"})
    assert response.status_code == 422 and "owner_token" in response.json()["detail"]


def test_the_same_file_from_two_people_gives_each_their_own_model(make_client):
    alice, bob = make_client(), make_client()
    data = small_onnx(seed=3)
    first, theirs = upload(alice, data), upload(bob, data)
    assert first.status_code == theirs.status_code == 201 and first.json()["id"] != theirs.json()["id"]
    again = upload(alice, data)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert bob.delete(f"/api/models/{theirs.json()['id']}").status_code == 204
    assert alice.get(f"/api/models/{first.json()['id']}").status_code == 200


def test_the_lecturer_shares_sees_and_deletes_everything(make_client, store):
    alice, bob, lecturer = make_client(), make_client(), make_client()
    model_id = upload(alice, small_onnx(seed=1)).json()["id"]
    assert model_id in listed(lecturer, LECTURER)
    assert lecturer.get(f"/api/models/{model_id}", headers=LECTURER).status_code == 200

    refused = alice.post(f"/api/models/{model_id}/share")
    assert refused.status_code == 403 and "only the lecturer" in refused.json()["detail"]
    shared = lecturer.post(f"/api/models/{model_id}/share", headers=LECTURER)
    assert shared.status_code == 200 and shared.json()["shared"] is True and shared.json()["owned"] is False
    assert listed(bob)[model_id]["shared"] is True and listed(bob)[model_id]["owned"] is False
    assert bob.get(f"/api/models/{model_id}").status_code == 200
    assert bob.delete(f"/api/models/{model_id}").status_code == 403  # shared is not given away
    fresh = ModelStore(store.models_dir.parent, builtins={})  # another worker reads meta.json
    assert fresh.access(model_id).shared is True and fresh.access(model_id).owner is not None

    assert lecturer.delete(f"/api/models/{model_id}/share", headers=LECTURER).json()["shared"] is False
    assert model_id not in listed(bob)
    assert lecturer.post("/api/models/tiny/share", headers=LECTURER).status_code == 409
    assert lecturer.delete("/api/models/tiny", headers=LECTURER).status_code == 403  # built-ins stay
    assert lecturer.delete(f"/api/models/{model_id}", headers=LECTURER).status_code == 204
    assert model_id not in listed(alice)


def test_a_wrong_lecturer_token_is_refused_not_ignored(make_client):
    alice = make_client()
    model_id = upload(alice, small_onnx(seed=1)).json()["id"]
    for method, path in [("GET", "/api/models"), ("DELETE", f"/api/models/{model_id}"),
                         ("POST", f"/api/models/{model_id}/share")]:
        response = alice.request(method, path, headers={"X-Admin-Token": ADMIN + "x"})
        assert response.status_code == 403, (method, path)
        assert "does not match the lecturer token" in response.json()["detail"]
    assert alice.get(f"/api/models/{model_id}").status_code == 200  # not deleted


def test_without_a_lecturer_token_configured_the_header_is_refused(client):
    response = client.get("/api/models", headers=LECTURER)
    assert response.status_code == 403
    assert "no lecturer token" in response.json()["detail"] and "CNN_VIS_ADMIN_TOKEN" in response.json()["detail"]


def test_a_model_stored_before_owners_existed_is_everyones_and_only_the_lecturer_deletes_it(make_client, store):
    model, _ = store.add_onnx(small_onnx(seed=4), "old.onnx", None, None)  # no owner, as before this change
    browser = make_client()
    assert model.id in listed(browser) and listed(browser)[model.id]["owned"] is False
    refused = browser.delete(f"/api/models/{model.id}")
    assert refused.status_code == 403 and "no owner" in refused.json()["detail"]
    assert browser.delete(f"/api/models/{model.id}", headers=LECTURER).status_code == 204


def test_one_person_may_keep_so_many_models(make_client):
    alice = make_client(quota_models_per_owner=2)
    bob = make_client()
    assert upload(alice, small_onnx(seed=1)).status_code == 201
    assert upload(alice, small_onnx(seed=2)).status_code == 201
    refused = upload(alice, small_onnx(seed=3))
    assert refused.status_code == 409
    assert "you have 2 uploaded models already" in refused.json()["detail"]
    assert "DELETE /api/models/{id}" in refused.json()["detail"] and refused.json()["limit"] == 2
    assert upload(alice, small_onnx(seed=1)).status_code == 200  # the same file again stores nothing
    assert upload(bob, small_onnx(seed=3)).status_code == 201  # the limit is per person
    lecturer = make_client()
    for seed in range(3):  # the lecturer is exempt
        assert lecturer.post("/api/models", files={"file": ("m.onnx", small_onnx(seed=seed))},
                             headers=LECTURER).status_code == 201


def test_one_persons_models_may_take_so_many_bytes(make_client):
    alice = make_client(quota_model_bytes_per_owner=1000)
    refused = upload(alice, small_onnx(seed=1))
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "one person may keep" in detail and "delete one of yours" in detail
    assert refused.json()["limit_bytes"] == 1000
    assert listed(alice).keys() == {"tiny"}  # nothing was stored
    assert alice.post("/api/models", files={"file": ("m.onnx", small_onnx(seed=1))},
                      headers=LECTURER).status_code == 201


def test_the_server_keeps_so_many_models_in_all(make_client):
    alice, bob = make_client(quota_models_total=2), make_client()
    assert upload(alice, small_onnx(seed=1)).status_code == 201
    assert upload(bob, small_onnx(seed=2)).status_code == 201
    for client, headers in [(bob, {}), (bob, LECTURER)]:  # the lecturer is not exempt from the server's limit
        refused = client.post("/api/models", files={"file": ("m.onnx", small_onnx(seed=3))}, headers=headers)
        assert refused.status_code == 507 and "at most 2 uploaded models" in refused.json()["detail"]
        assert "ask the lecturer" in refused.json()["detail"]


def test_the_server_keeps_so_many_bytes_in_all(make_client):
    alice = make_client(quota_model_bytes_total=1000)
    for headers in ({}, LECTURER):
        refused = alice.post("/api/models", files={"file": ("m.onnx", small_onnx(seed=1))}, headers=headers)
        assert refused.status_code == 507 and "would pass the" in refused.json()["detail"]


def test_only_a_hash_of_the_token_is_stored(make_client, store):
    alice = make_client()
    created = upload(alice, small_onnx(seed=1)).json()
    meta = (store.models_dir / created["id"] / "meta.json").read_text()
    assert created["owner_token"] not in meta and hash_token(created["owner_token"]) in meta
