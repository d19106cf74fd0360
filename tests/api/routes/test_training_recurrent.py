"""The training lab's recurrent networks (an LSTM, a GRU with attention, reading digits row by row): they train
through the same API, stream their gates and per-row states as pictures, take the toggles that apply (dropout
between layers and before the classifier, L2, pre-training from the shipped weights) and refuse those that do
not (batch norm, skip connections), and open as models."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.api.deps import get_job_manager
from app.services.overlay import png_data_url
from app.services.training_jobs import JobManager, diverging, gate_weight_images
from engine.datasets.mnist import load_mnist
from engine.graph import Graph
from engine.models import sequence_digits
from engine.models.sequence_digits import gru_attention_spec, lstm_spec
from engine.training import evaluate
from tests.api.routes.test_training import read_events, training_threads, wait_finished

QUICK = {"train_size": 200, "test_size": 100, "epochs": 2, "batch_size": 50, "optimizer": "adam", "lr": 0.003}


@pytest.fixture
def fake_pretrained() -> dict[str, dict[str, np.ndarray]]:
    """Stand in for the shipped recurrent weights: fixed, recognisable sets."""
    return {sequence_digits.LSTM_ID: Graph(lstm_spec()).init_params(seed=99),
            sequence_digits.GRU_ATTENTION_ID: Graph(gru_attention_spec()).init_params(seed=98)}


@pytest.fixture
def manager(fake_pretrained):
    manager = JobManager(max_running=2, max_kept=10, pretrained_source=lambda model_id: fake_pretrained[model_id])
    yield manager
    manager.shutdown(timeout=30)
    assert not training_threads(), "a training thread outlived its test"


@pytest.fixture
def lab(client, manager):
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    return client


def decode(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):]))))


def finished(lab, manager, settings: dict) -> tuple[dict, list]:
    """Start a job, let it finish; its final state and its events."""
    response = lab.post("/api/training/jobs", json=settings)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    wait_finished(manager, job_id)
    state = lab.get(f"/api/training/jobs/{job_id}").json()
    assert state["status"] == "done", state["error"]
    return state, read_events(lab, job_id)


# --- training and the pictures ---------------------------------------------------------------------


def test_an_lstm_trains_and_streams_its_gates_and_states(lab, manager):
    state, events = finished(lab, manager, {**QUICK, "network": "lstm"})
    assert state["param_count"] == Graph(lstm_spec()).param_count() == 82_186
    assert "LSTM reading the digit row by row" in state["network"] and state["name"].startswith("LSTM, Adam")
    assert [e["epoch"] for e in state["epochs"]] == [0, 1, 2]
    assert state["epochs"][-1]["test_loss"] < state["epochs"][0]["test_loss"]

    pictures = [d for _, kind, d in events if kind == "images"][-1]
    assert pictures["layout"] == "recurrent" and pictures["filter_layer"] == pictures["feature_layer"] == "lstm"
    assert pictures["filter_title"] == "Input weights of each gate"
    assert pictures["filter_labels"] == ["i: input gate", "f: forget gate", "g: candidate cell", "o: output gate"]
    # a gate: 128 units (rows) by the 28 pixels of a row; a state: 28 rows (steps) by 128 units
    assert [decode(u).shape for u in pictures["filters"]] == [(128, 28, 3)] * 4
    assert [decode(u).shape for u in pictures["feature_maps"]] == [(28, 128, 3)] * 2
    assert [label.split(" ")[:3] for label in pictures["feature_labels"]] == [["hidden", "state", "h"],
                                                                               ["cell", "state", "c"]]

    # they are the trained network's: its gate weights, and its states on the test digit shown
    job = manager.get(state["id"])
    trained, initial = job.params["lstm.weight_ih_l0"], job.initial_params["lstm.weight_ih_l0"]
    assert pictures["filters"] == gate_weight_images(trained, 4) != gate_weight_images(initial, 4)
    x = load_mnist("test", limit=1)[0]
    trace = job.graph.forward(x, job.params)
    hidden = job.graph.by_id["lstm"].op.recorded(trace.caches["lstm"])["h_l0"][0]
    assert pictures["feature_maps"][0] == png_data_url(diverging(hidden, 1.0))
    assert pictures["sample"]["predicted"] == int(trace.output[0].argmax())


def test_a_stacked_gru_with_attention_takes_dropout_and_l2(lab, manager):
    settings = {**QUICK, "network": "gru_attention", "num_layers": 2, "dropout": True, "dropout_p": 0.2, "l2": True,
                "epochs": 3}
    state, events = finished(lab, manager, settings)
    assert "2 stacked layers" in state["network"] and "dropout 0.2 between the layers and before" in state["network"]
    assert state["epochs"][-1]["test_loss"] < state["epochs"][0]["test_loss"]
    graph = manager.get(state["id"]).graph
    assert graph.by_id["gru"].op.attrs["num_layers"] == 2 and graph.by_id["gru"].op.attrs["dropout"] == 0.2
    assert graph.by_id["dropout"].op.attrs["p"] == 0.2 and graph.by_id["dropout"].inputs == ["attention"]

    pictures = [d for _, kind, d in events if kind == "images"][-1]
    assert pictures["filter_labels"] == ["r: reset gate", "z: update gate", "n: candidate state"]
    assert [decode(u).shape for u in pictures["filters"]] == [(64, 28, 3)] * 3
    hidden, attention = (decode(u) for u in pictures["feature_maps"])
    assert hidden.shape == (28, 64, 3) and attention.shape == (28, 1)
    # the attention picture is the weights of the rows, the heaviest one white
    job = manager.get(state["id"])
    trace = job.graph.forward(load_mnist("test", limit=1)[0], job.params)
    weights = job.graph.by_id["attention"].op.recorded(trace.caches["attention"])["weights"][0]
    np.testing.assert_allclose(attention[:, 0] / 255, weights / weights.max(), atol=1 / 255)


def test_l2_pulls_the_recurrent_weights_in(lab, manager):
    """L2 reaches the recurrent layer's weight matrices (not only conv and linear weights)."""
    settings = {**QUICK, "network": "lstm", "optimizer": "sgd", "lr": 0.05, "epochs": 3}
    plain, _ = finished(lab, manager, settings)
    decayed, _ = finished(lab, manager, {**settings, "l2": True, "weight_decay": 0.1})
    norms = {}
    for name, state in (("plain", plain), ("decayed", decayed)):
        params = manager.get(state["id"]).params
        norms[name] = {k: float(np.linalg.norm(params[k])) for k in ("lstm.weight_hh_l0", "lstm.bias_hh_l0")}
    assert norms["decayed"]["lstm.weight_hh_l0"] < 0.97 * norms["plain"]["lstm.weight_hh_l0"], norms
    # biases are not decayed: they barely differ (control: the difference above is the decay's)
    assert norms["decayed"]["lstm.bias_hh_l0"] > 0.97 * norms["plain"]["lstm.bias_hh_l0"], norms


# --- pre-training --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("network", "model_id"), [("lstm", sequence_digits.LSTM_ID),
                                                   ("gru_attention", sequence_digits.GRU_ATTENTION_ID)])
def test_pretrained_starts_from_the_shipped_weights(lab, manager, fake_pretrained, network, model_id):
    source = fake_pretrained[model_id]
    job = lab.post("/api/training/jobs", json={**QUICK, "network": network, "pretrained": True}).json()
    assert job["pretrained_params"] == list(source)
    wait_finished(manager, job["id"])
    start = lab.get(f"/api/training/jobs/{job['id']}").json()["epochs"][0]
    spec = lstm_spec() if network == "lstm" else gru_attention_spec()
    loss, accuracy = evaluate(Graph(spec), source, *load_mnist("test", limit=QUICK["test_size"]))
    assert start["test_loss"] == pytest.approx(loss) and start["test_accuracy"] == pytest.approx(accuracy)

    # stacked: "load what fits": the first layer and the classifier come pre-trained, the layer above starts fresh
    stacked = lab.post("/api/training/jobs", json={**QUICK, "network": network, "pretrained": True,
                                                    "num_layers": 2, "dropout": True}).json()
    cell = "lstm" if network == "lstm" else "gru"
    expected = [k for k in source if (k.startswith(f"{cell}.") and k.endswith("_l0")) or not k.startswith(cell)]
    assert stacked["pretrained_params"] == expected
    state = manager.get(stacked["id"])
    np.testing.assert_array_equal(state.initial_params[f"{cell}.weight_hh_l0"], source[f"{cell}.weight_hh_l0"])
    assert f"{cell}.weight_hh_l1" not in stacked["pretrained_params"]
    wait_finished(manager, stacked["id"])


def test_fine_tuning_from_the_really_shipped_recurrent_weights(client):
    """The default source reads engine/models/weights/digits_lstm.npz and digits_gru_attention.npz."""
    manager = JobManager(max_running=2)
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    try:
        for network in ("lstm", "gru_attention"):
            job = client.post("/api/training/jobs", json={**QUICK, "network": network, "epochs": 1,
                                                          "pretrained": True}).json()
            wait_finished(manager, job["id"])
            start = client.get(f"/api/training/jobs/{job['id']}").json()["epochs"][0]
            assert start["test_accuracy"] > 0.95 and start["test_loss"] < 0.2, (network, start)
    finally:
        manager.shutdown(timeout=30)


# --- what does not apply ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("patch", "expected"), [
    ({"network": "lstm", "batch_norm": True}, "batch_norm needs a CNN ('classic' or 'deep'): the lstm network is "
                                              "recurrent"),
    ({"network": "gru_attention", "skip_connections": True}, "skip_connections needs network 'deep': the "
                                                             "gru_attention network is recurrent"),
    ({"network": "lstm", "num_layers": 4}, "num_layers must be from 1 to 3, got 4"),
    ({"network": "lstm", "num_layers": 0}, "num_layers must be from 1 to 3, got 0"),
    ({"network": "rnn"}, "network: Input should be 'classic', 'deep', 'lstm' or 'gru_attention'"),
])
def test_toggles_that_do_not_apply_are_422(lab, patch, expected):
    response = lab.post("/api/training/jobs", json={**QUICK, **patch})
    assert response.status_code == 422
    assert expected in response.json()["detail"]
    assert not training_threads()


# --- the result as a model ---------------------------------------------------------------------------------


def test_a_trained_lstm_opens_as_a_model(lab, manager):
    state, _ = finished(lab, manager, {**QUICK, "network": "lstm"})
    model_id = lab.post(f"/api/training/jobs/{state['id']}/model").json()["model_id"]
    detail = lab.get(f"/api/models/{model_id}").json()
    assert detail["cam_layer"] is None and detail["input_shape"] == [1, 28, 28]
    assert detail["param_count"] == state["param_count"]
    x, _ = load_mnist("test", limit=1)
    buffer = io.BytesIO()
    np.save(buffer, x)
    predicted = lab.post(f"/api/models/{model_id}/predict", content=buffer.getvalue(),
                         headers={"content-type": "application/x-npy"})
    assert predicted.status_code == 200, predicted.text
    job = manager.get(state["id"])
    assert predicted.json()["classes"][0]["index"] == int(np.argmax(job.graph.forward(x, job.params).output[0]))
