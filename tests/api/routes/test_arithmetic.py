"""POST /api/arithmetic/output-size and /volume."""

from __future__ import annotations


def test_inexact_stride_is_explained(client):
    body = {"kind": "conv", "axes": [{"in_size": 32, "kernel_size": 5, "stride": 2, "padding": 0}]}
    response = client.post("/api/arithmetic/output-size", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    # floor((32 - 5 + 0) / 2) + 1 = floor(13.5) + 1 = 14
    assert data["output_shape"] == [14]
    axis = data["axes"][0]
    assert axis["axis"] == "W" and axis["exact"] is False and axis["fraction"] == [27, 2]
    assert "13.5" in axis["worked"] and axis["explanation"]
    assert axis["suggestions"], "an inexact division comes with suggestions"
    for suggestion in axis["suggestions"]:
        assert suggestion["parameter"] in {"padding", "stride", "in_size"}


def test_two_axes_named_h_and_w(client):
    axes = [{"in_size": 224, "kernel_size": 7, "stride": 2, "padding": 3},
            {"in_size": 224, "kernel_size": 7, "stride": 2, "padding": [3, 3]}]
    data = client.post("/api/arithmetic/output-size", json={"axes": axes}).json()
    # floor((224 - 7 + 6) / 2) + 1 = 111 + 1 = 112 (ResNet's stem)
    assert data["output_shape"] == [112, 112]
    assert [a["axis"] for a in data["axes"]] == ["H", "W"]


def test_pool_ceil_mode_and_transposed(client):
    pool = {"kind": "pool", "ceil_mode": True, "axes": [{"in_size": 5, "kernel_size": 2, "stride": 2}]}
    assert client.post("/api/arithmetic/output-size", json=pool).json()["output_shape"] == [3]  # ceil(3/2)+1
    up = {"kind": "transposed", "axes": [{"in_size": 7, "kernel_size": 4, "stride": 2, "padding": 1,
                                          "output_padding": 1}]}
    # (7 - 1)*2 - 1 - 1 + 1*(4 - 1) + 1 + 1 = 15
    assert client.post("/api/arithmetic/output-size", json=up).json()["output_shape"] == [15]


def test_kernel_larger_than_input_is_422_with_advice(client):
    body = {"axes": [{"in_size": 3, "kernel_size": 7}]}
    response = client.post("/api/arithmetic/output-size", json=body)
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_malformed_requests_are_422_json(client):
    for body in [{}, {"axes": []}, {"axes": [{"in_size": 0, "kernel_size": 3}]}, {"axes": [{"in_size": "x"}]},
                 {"kind": "fold", "axes": [{"in_size": 5, "kernel_size": 3}]},
                 {"axes": [{"in_size": 5, "kernel_size": 3, "output_padding": 1}]}]:
        response = client.post("/api/arithmetic/output-size", json=body)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], str)
    response = client.post("/api/arithmetic/output-size", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_volume_view_counts_parameters(client):
    body = {"width": 32, "height": 32, "depth": 3, "kernel": 5, "stride": 1, "padding": 2, "num_filters": 10}
    data = client.post("/api/arithmetic/volume", json=body).json()
    assert data["out_shape"] == [32, 32, 10]
    assert data["params"] == (5 * 5 * 3 + 1) * 10
    assert set(data["axes"]) == {"W", "H"}
