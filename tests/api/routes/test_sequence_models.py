"""The API on sequence models (issue 14): activations with a time axis, per-step states, the prediction after each
step, attention over time steps and a recurrent unit's explanation, on small recurrent models and the built-in
digits_lstm and digits_gru_attention."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import app.services.steps as steps_service
from app.api.deps import get_model_store
from app.main import create_app
from app.schemas.explanations import UnitExplanation
from app.services.models import ModelStore, builtin_loaders
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from tests.api.conftest import npy_bytes, npy_load, tiny_bundle

NPY = {"content-type": "application/x-npy"}
T, F, H = 6, 5, 4
LABELS = ["a", "b", "c"]
#: a (1, T, F) 'image' read row by row by an LSTM whose last state is classified
LSTM_SPEC = {"input_shape": [1, T, F], "nodes": [
    {"id": "rows", "op": "reshape", "shape": [T, F]},
    {"id": "lstm", "op": "lstm", "hidden_size": H, "output": "hidden"},
    {"id": "flat", "op": "flatten"},
    {"id": "fc", "op": "linear", "out_features": 3}]}
#: the same rows through a GRU, attention pooling over its outputs
GRU_SPEC = {"input_shape": [1, T, F], "nodes": [
    {"id": "rows", "op": "reshape", "shape": [T, F]},
    {"id": "gru", "op": "gru", "hidden_size": H},
    {"id": "attention", "op": "sequence_attention", "attention_size": 3},
    {"id": "fc", "op": "linear", "out_features": 3}]}
#: a model that takes the sequence (T, F) itself, as an uploaded batch_first LSTM does
SEQUENCE_SPEC = {"input_shape": [T, F], "nodes": [
    {"id": "gru", "op": "gru", "hidden_size": H, "bidirectional": True, "num_layers": 2, "output": "hidden"},
    {"id": "flat", "op": "flatten"},
    {"id": "fc", "op": "linear", "out_features": 3}]}


def bundle(model_id: str, spec: dict, attention_node: str | None = None):
    def load() -> ModelBundle:
        graph = Graph(spec)
        params = {k: v * 3 for k, v in graph.init_params(seed=1).items()}  # livelier than the initialisation
        return ModelBundle(id=model_id, name=model_id, task="test classification", graph=graph, params=params,
                           labels=list(LABELS), source="random weights, for tests", attention_node=attention_node,
                           preprocessing=Preprocessing(resize=T, crop=T, mean=(0.5,), std=(0.25,), grayscale=True))
    return load


@pytest.fixture
def store(settings) -> ModelStore:
    return ModelStore(settings.data_dir, builtins={
        "rows_lstm": bundle("rows_lstm", LSTM_SPEC), "seq_gru": bundle("seq_gru", SEQUENCE_SPEC),
        "rows_gru": bundle("rows_gru", GRU_SPEC, attention_node="attention"), "tiny": tiny_bundle})


def sample(model_id: str, seed: int = 0) -> np.ndarray:
    shape = SEQUENCE_SPEC["input_shape"] if model_id == "seq_gru" else LSTM_SPEC["input_shape"]
    return np.random.default_rng(seed).standard_normal((1, *shape)).astype(np.float32)


def make_run(client, model_id: str, seed: int = 0) -> tuple[np.ndarray, dict]:
    x = sample(model_id, seed)
    response = client.post(f"/api/models/{model_id}/activations", content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    return x, response.json()


def engine_trace(store, model_id: str, x: np.ndarray):
    model = store.get(model_id)
    return model, model.graph.forward(x, model.bundle.params)  # caches kept: the ops' own recordings


# --- activations, pictures, architecture --------------------------------------------------------------------------
def test_activations_say_which_axis_is_time_and_where_the_steps_are(client):
    _, data = make_run(client, "rows_gru")
    nodes = {n["id"]: n for n in data["nodes"]}
    run = data["run_id"]
    assert (nodes["rows"]["time_axis"], nodes["rows"]["per_step_shape"], nodes["rows"]["steps_url"]) == (0, [F], None)
    assert (nodes["gru"]["time_axis"], nodes["gru"]["per_step_shape"]) == (0, [H])
    assert nodes["gru"]["steps_url"] == f"/api/runs/{run}/nodes/gru/steps"
    assert nodes["attention"]["time_axis"] is None and nodes["attention"]["steps_url"].endswith("/attention/steps")
    assert nodes["input"]["time_axis"] is None and nodes["fc"]["steps_url"] is None
    # a sequence is one map, T rows (time) by F columns, not T one-pixel tiles
    layout = nodes["gru"]["layout"]
    assert (layout["tiles"], layout["tile_height"], layout["tile_width"], layout["time"]) == (1, T, H, "rows")
    assert nodes["fc"]["layout"]["time"] is None


def test_a_sequence_png_is_one_map_with_time_down_the_rows(client):
    _, data = make_run(client, "rows_gru", seed=2)
    base = f"/api/runs/{data['run_id']}/nodes"
    activation = npy_load(client.get(f"{base}/gru.npy").content)[0]  # (T, H)
    png = client.get(f"{base}/gru.png")
    assert png.status_code == 200
    picture = np.asarray(Image.open(io.BytesIO(png.content)))
    assert picture.shape == (T, H)
    described = client.get(f"{base}/gru.json").json()
    (low, high), = described["layout"]["ranges"]
    assert (low, high) == pytest.approx((activation.min(), activation.max()))
    expected = np.clip((activation - low) / (high - low) * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(picture, expected)  # pixel (t, j) is step t, unit j
    assert described["time_axis"] == 0 and described["per_step_shape"] == [H] and described["layout"]["time"] == "rows"
    rows = np.asarray(Image.open(io.BytesIO(client.get(f"{base}/rows.png").content)))
    assert rows.shape == (T, F)  # the 'image' read row by row looks like the image


@pytest.mark.parametrize("model_id", ["rows_lstm", "rows_gru", "seq_gru"])
def test_every_node_of_a_sequence_model_has_pictures_and_numbers(client, model_id):
    _, data = make_run(client, model_id, seed=3)
    for node in data["nodes"]:
        for kind in ("png", "npy", "json"):
            for scale in ("channel", "layer"):
                response = client.get(f"/api/runs/{data['run_id']}/nodes/{node['id']}.{kind}?scale={scale}")
                assert response.status_code == 200, (node["id"], kind, response.text)


def test_the_architecture_lists_recurrent_parameters_by_torchs_names(client):
    detail = client.get("/api/models/seq_gru").json()
    nodes = {n["id"]: n for n in detail["architecture"]["nodes"]}
    sequence = nodes["gru"]["sequence"]
    assert sequence["kind"] == "recurrent" and sequence["cell"] == "gru"
    assert (sequence["steps"], sequence["features"], sequence["per_step_shape"]) == (T, F, [H])
    assert (sequence["num_layers"], sequence["directions"], sequence["output"]) == (2, 2, "hidden")
    assert sequence["unit_shape"] == [2, T, 2 * H] and sequence["gates"] == ["r", "z", "n"]
    params = client.get("/api/models/seq_gru/params").json()["params"]
    listed = [(p["name"], p["shape"]) for p in params if p["node"] == "gru"]
    assert [(f"gru.{p['name']}", p["shape"]) for p in sequence["params"]] == listed
    assert [p["name"] for p in sequence["params"]][:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                                            "weight_ih_l0_reverse"]
    assert sequence["params"][4 * 2]["shape"] == [3 * H, 2 * H]  # layer 1 reads both directions
    gru = {n["id"]: n for n in client.get("/api/models/rows_gru").json()["architecture"]["nodes"]}
    assert gru["attention"]["sequence"]["kind"] == "attention" and gru["attention"]["sequence"]["recorded"] == [
        "scores", "weights"]
    assert gru["rows"]["time_axis"] == 0 and gru["gru"]["time_axis"] == 0 and gru["fc"]["time_axis"] is None


def test_predict_and_forward_run_sequence_models(client):
    x = sample("seq_gru")
    predicted = client.post("/api/models/seq_gru/predict?top_k=3", content=npy_bytes(x), headers=NPY)
    assert predicted.status_code == 200 and len(predicted.json()["classes"]) == 3
    hidden = client.post("/api/models/seq_gru/forward?node=gru", content=npy_bytes(x), headers=NPY)
    assert hidden.status_code == 200 and npy_load(hidden.content).shape == (1, 4, H)  # h_n: (layers · D, H)


# --- per-step states -----------------------------------------------------------------------------------------------
def test_steps_of_an_lstm_are_its_recording_and_the_prediction_grows(client, store):
    x, data = make_run(client, "rows_lstm", seed=4)
    response = client.get(f"/api/runs/{data['run_id']}/nodes/lstm/steps?top_k=2")
    assert response.status_code == 200, response.text
    steps = response.json()
    model, trace = engine_trace(store, "rows_lstm", x)
    recorded = model.graph.by_id["lstm"].op.recorded(trace.caches["lstm"])
    arrays = {a["name"]: a for a in steps["arrays"]}
    assert list(arrays) == ["h_l0", "c_l0", "i_l0", "f_l0", "g_l0", "o_l0"]
    for name, array in arrays.items():
        np.testing.assert_allclose(array["values"], recorded[name][0], rtol=1e-6, atol=1e-7, err_msg=name)
    assert arrays["f_l0"]["title"] == "forget gate" and arrays["c_l0"]["quantity"] == "c"
    assert (steps["steps"], steps["unit_count"], steps["truncated"], steps["sequence_node"]) == (T, H, False, "rows")
    # the last step's h is h_n, the node's own activation
    h_n = npy_load(client.get(f"/api/runs/{data['run_id']}/nodes/lstm.npy").content)[0, 0]
    np.testing.assert_allclose(arrays["h_l0"]["values"][-1], h_n, rtol=1e-6)
    predictions = steps["predictions"]
    assert predictions["available"] and predictions["head"] == ["flat", "fc"] and predictions["state"] == "h"
    assert [p["step"] for p in predictions["steps"]] == list(range(T))
    assert all(len(p["classes"]) == 2 for p in predictions["steps"])
    final = predictions["steps"][-1]["classes"][0]
    assert final == pytest.approx(data["classes"][0])  # after the last row: the run's own prediction
    for t, step in enumerate(predictions["steps"]):  # each: the model on the first t + 1 rows, run from scratch
        cut = Graph({**LSTM_SPEC, "input_shape": [1, t + 1, F],
                     "nodes": [{**LSTM_SPEC["nodes"][0], "shape": [t + 1, F]}, *LSTM_SPEC["nodes"][1:]]})
        logits = cut.forward(np.ascontiguousarray(x[:, :, :t + 1]), model.bundle.params, keep_caches=False).output
        top = step["classes"][0]
        assert top["index"] == int(np.argmax(logits[0])) and top["logit"] == pytest.approx(float(logits[0].max()),
                                                                                             rel=1e-5)


def test_steps_are_bounded_and_can_be_paged(client, monkeypatch):
    _, data = make_run(client, "seq_gru", seed=5)
    full = client.get(f"/api/runs/{data['run_id']}/nodes/gru/steps").json()
    assert len(full["arrays"]) == 2 * 2 * 4  # layers × directions × (h, r, z, n)
    assert {(a["layer"], a["direction"]) for a in full["arrays"]} == {(k, d) for k in (0, 1)
                                                                       for d in ("forward", "reverse")}
    assert full["predictions"]["available"] is False and "bidirectional" in full["predictions"]["reason"]
    monkeypatch.setattr(steps_service, "MAX_STEP_VALUES", T * 16 * 2)  # 2 units of 16 arrays
    bounded = client.get(f"/api/runs/{data['run_id']}/nodes/gru/steps").json()
    assert (bounded["unit_count"], bounded["truncated"]) == (2, True)
    paged = client.get(f"/api/runs/{data['run_id']}/nodes/gru/steps?first_unit=2&units=1").json()
    assert (paged["first_unit"], paged["unit_count"]) == (2, 1)
    by_name = {a["name"]: a["values"] for a in full["arrays"]}
    for array in paged["arrays"]:
        np.testing.assert_allclose(array["values"], np.asarray(by_name[array["name"]])[:, 2:3])
    outside = client.get(f"/api/runs/{data['run_id']}/nodes/gru/steps?first_unit={H}")
    assert outside.status_code == 422 and f"0 to {H - 1}" in outside.json()["detail"]


def test_steps_of_an_attention_node_are_its_weights(client, store):
    x, data = make_run(client, "rows_gru", seed=6)
    steps = client.get(f"/api/runs/{data['run_id']}/nodes/attention/steps").json()
    model, trace = engine_trace(store, "rows_gru", x)
    recorded = model.graph.by_id["attention"].op.recorded(trace.caches["attention"])
    assert steps["kind"] == "attention" and steps["sequence_node"] == "gru" and steps["score"] == "additive"
    np.testing.assert_allclose(steps["weights"], recorded["weights"][0], rtol=1e-6)
    np.testing.assert_allclose(steps["scores"], recorded["scores"][0], rtol=1e-6, atol=1e-7)
    assert steps["weights_sum"] == pytest.approx(1.0, abs=1e-6)
    gru = client.get(f"/api/runs/{data['run_id']}/nodes/gru/steps").json()
    assert not gru["predictions"]["available"] and "'attention' reads" in gru["predictions"]["reason"]


@pytest.mark.parametrize("node, words", [("fc", "is a linear"), ("input", "is the model's input")])
def test_nodes_without_steps_are_a_422_naming_the_ones_with(client, node, words):
    _, data = make_run(client, "rows_gru")
    response = client.get(f"/api/runs/{data['run_id']}/nodes/{node}/steps")
    assert response.status_code == 422
    assert words in response.json()["detail"] and "this model's: gru, attention" in response.json()["detail"]


# --- a recurrent unit explained ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_id, node, index", [("rows_lstm", "lstm", "3,1"), ("rows_gru", "gru", "0,2"),
                                                   ("seq_gru", "gru", "1,4,6")])
def test_a_recurrent_unit_at_one_step_is_explained(client, model_id, node, index):
    _, data = make_run(client, model_id, seed=7)
    response = client.get(f"/api/runs/{data['run_id']}/nodes/{node}/units/{index}")
    assert response.status_code == 200, response.text
    explanation = response.json()
    assert UnitExplanation.model_validate(explanation).root.family == "recurrent"
    assert explanation["result"] == pytest.approx(explanation["engine_value"], rel=1e-4, abs=1e-6)
    for gate in explanation["gates"]:
        assert gate["result"] == pytest.approx(gate["engine_value"], rel=1e-4, abs=1e-6), gate["gate"]
    t = int(index.split(",")[-2])
    assert explanation["step"] == t and explanation["index"] == [int(i) for i in index.split(",")]
    steps = client.get(f"/api/runs/{data['run_id']}/nodes/{node}/steps").json()
    layer = explanation["layer"]
    direction = "_reverse" if explanation["direction"] == "reverse" else ""
    h = {a["name"]: a["values"] for a in steps["arrays"]}[f"h_l{layer}{direction}"]
    assert explanation["engine_value"] == pytest.approx(h[t][explanation["unit"]], rel=1e-6)


def test_a_unit_outside_the_steps_says_what_the_index_means(client):
    _, data = make_run(client, "rows_lstm")
    response = client.get(f"/api/runs/{data['run_id']}/nodes/lstm/units/{T},0")
    assert response.status_code == 422
    assert f"of shape [{T}, {H}] (step t, then unit j" in response.json()["detail"]
    softmax = client.get(f"/api/runs/{data['run_id']}/nodes/fc/units/1?softmax=true")
    assert softmax.status_code == 200 and softmax.json()["kind"] == "softmax"


# --- attention over time steps -------------------------------------------------------------------------------------
def test_learned_attention_over_the_rows_is_the_attention_nodes_weights(client):
    x, data = make_run(client, "rows_gru", seed=8)
    response = client.post("/api/models/rows_gru/attention?method=learned_attention&include_input_map=true",
                           content=npy_bytes(x), headers=NPY)
    assert response.status_code == 200, response.text
    answer = response.json()
    weights = client.get(f"/api/runs/{data['run_id']}/nodes/attention/steps").json()["weights"]
    assert answer["kind"] == "image" and answer["layer"] == "attention"
    np.testing.assert_allclose(answer["steps"]["values"], weights, rtol=1e-5, atol=1e-6)  # rounded to 6 places
    assert sum(answer["steps"]["values"]) == pytest.approx(1.0, abs=1e-5)
    assert answer["steps"]["step_axis"] == "H" and answer["steps"]["overlay_png"].startswith("data:image/png")
    input_map = np.asarray(answer["input_map"])  # row t: step t's normalised weight
    np.testing.assert_allclose(input_map[:, 0], answer["steps"]["normalized"], atol=1e-6)
    assert np.ptp(input_map, axis=1).max() == 0


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input"])
def test_gradients_per_row_are_the_per_pixel_map_summed_over_each_row(client, method):
    x = sample("rows_lstm", seed=9)
    answer = client.post(f"/api/models/rows_lstm/attention?method={method}", content=npy_bytes(x),
                         headers=NPY).json()
    steps = answer["steps"]
    assert steps["node"] == "rows" and steps["signed"] is (method == "gradient_x_input") and len(steps["values"]) == T
    np.testing.assert_allclose(steps["values"], np.asarray(answer["layer_map"]).sum(axis=1), rtol=1e-4, atol=1e-6)
    strip = Image.open(io.BytesIO(base64.b64decode(steps["strip_png"].split(",", 1)[1])))
    assert strip.size == (T, 16)


def test_a_model_that_takes_the_sequence_itself_gets_steps_without_an_overlay(client):
    answer = client.post("/api/models/seq_gru/attention?method=gradient_x_input", content=npy_bytes(sample("seq_gru")),
                         headers=NPY).json()
    assert answer["kind"] == "sequence" and answer["steps"]["step_axis"] == "C"
    assert answer["steps"]["node"] == "input" and answer["steps"]["overlay_png"] is None
    assert sum(answer["steps"]["values"]) == pytest.approx(sum(answer["layer_map"]), rel=1e-4, abs=1e-6)
    support = {m["name"]: m for m in client.get("/api/models/seq_gru/attention").json()["methods"]}
    assert not support["learned_attention"]["available"] and support["saliency"]["available"]


def test_models_without_a_sequence_have_no_steps(client):
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 12)).astype(np.float32)
    answer = client.post("/api/models/tiny/attention?method=saliency", content=npy_bytes(x), headers=NPY)
    assert answer.status_code == 200 and answer.json()["steps"] is None


# --- the built-in models -------------------------------------------------------------------------------------------
@pytest.fixture
def real_client(settings) -> TestClient:
    loaders = builtin_loaders(settings.data_dir / "cache")
    wanted = {k: v for k, v in loaders.items() if k in ("digits_lstm", "digits_gru_attention")}
    if len(wanted) < 2:
        pytest.skip("the recurrent digit models are not registered yet")
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: ModelStore(settings.data_dir, builtins=wanted)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def digit_png() -> bytes:
    from engine.datasets.mnist import TRAIN_SIZE, load_raw

    images, _ = load_raw()
    buffer = io.BytesIO()
    Image.fromarray(images[TRAIN_SIZE]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_lstm_digit_model_step_by_step(real_client):
    png = digit_png()
    run = real_client.post("/api/models/digits_lstm/activations", files={"image": ("d.png", png, "image/png")}).json()
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["rows"]["layout"]["time"] == "rows" and nodes["lstm"]["steps_url"]
    steps = real_client.get(nodes["lstm"]["steps_url"]).json()
    assert steps["steps"] == 28 and steps["hidden_size"] == 128 and not steps["truncated"]
    predictions = steps["predictions"]["steps"]
    assert predictions[-1]["classes"][0] == pytest.approx(run["classes"][0])
    confidence = [p["classes"][0]["probability"] for p in predictions]
    assert max(confidence[-3:]) > 0.9 > min(confidence[:3])  # the first rows are blank: it is unsure, then sure
    explanation = real_client.get(f"/api/runs/{run['run_id']}/nodes/lstm/units/27,5").json()
    assert explanation["kind"] == "lstm" and explanation["activation_index"] == [0, 5]
    assert explanation["result"] == pytest.approx(explanation["engine_value"], rel=1e-4, abs=1e-6)
    detail = real_client.get("/api/models/digits_lstm").json()
    lstm = {n["id"]: n for n in detail["architecture"]["nodes"]}["lstm"]["sequence"]
    assert [p["name"] for p in lstm["params"]] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert lstm["params"][0]["shape"] == [512, 28] and lstm["per_step_shape"] == [128]


def test_the_gru_digit_models_attention_over_the_rows(real_client):
    png = digit_png()
    answer = real_client.post("/api/models/digits_gru_attention/attention?method=learned_attention",
                              files={"image": ("d.png", png, "image/png")})
    assert answer.status_code == 200, answer.text
    steps = answer.json()["steps"]
    assert len(steps["values"]) == 28 and sum(steps["values"]) == pytest.approx(1.0, abs=1e-5)
    run = real_client.post("/api/models/digits_gru_attention/activations",
                           files={"image": ("d.png", png, "image/png")}).json()
    weights = real_client.get(f"/api/runs/{run['run_id']}/nodes/attention/steps").json()["weights"]
    np.testing.assert_allclose(steps["values"], weights, rtol=1e-5, atol=1e-6)
    rows = real_client.post("/api/models/digits_gru_attention/attention?method=saliency",
                            files={"image": ("d.png", png, "image/png")}).json()["steps"]
    assert rows["step_axis"] == "H" and rows["overlay_png"]


@pytest.mark.parametrize("model_id, node, position", [("rows_lstm", "lstm", "0,0,2"), ("rows_lstm", "lstm", "0,2"),
                                                      ("rows_gru", "gru", "0,4,3"), ("seq_gru", "gru", "3,1")])
def test_a_position_in_the_maps_is_explained_as_the_unit_held_there(client, model_id, node, position):
    """The explorer sends the position it shows (a (T, F) map is one channel: a leading 0); the API explains the
    (step, unit) whose hidden state sits there, and says where it sits."""
    _, data = make_run(client, model_id, seed=5)
    response = client.get(f"/api/runs/{data['run_id']}/nodes/{node}/units/{position}?position=true")
    assert response.status_code == 200, response.text
    explanation = response.json()
    at = [int(i) for i in position.split(",")][-2:]
    assert explanation["activation_index"] == at
    activation = npy_load(client.get(f"/api/runs/{data['run_id']}/nodes/{node}.npy").content)[0]
    assert explanation["engine_value"] == pytest.approx(float(activation[tuple(at)]), rel=1e-6)


def test_a_position_outside_the_output_is_a_422_saying_so(client):
    _, data = make_run(client, "rows_lstm")
    outside = client.get(f"/api/runs/{data['run_id']}/nodes/lstm/units/0,{H}?position=true")
    assert outside.status_code == 422 and "holds no hidden state" in outside.json()["detail"]
