"""The sliding-window playground: hand-worked steps, equality with the engine's layers over random
settings, PyTorch as an independent reference, and the limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import EngineError
from engine.layers.conv import conv_forward
from engine.layers.pool import avg_pool_forward, max_pool_forward
from engine.playground import conv_steps, pool_steps

GRID = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]

# --- hand-worked ------------------------------------------------------------------------------------


def test_conv_by_hand():
    r = conv_steps(GRID, [[1, 0], [0, -1]], bias=1)
    # each window: top-left - bottom-right + 1 = (a - (a + 4)) + 1 = -3
    assert r.output == [[-3.0, -3.0], [-3.0, -3.0]]
    first = r.steps[0]
    assert first.values == [[1.0, 2.0], [4.0, 5.0]]
    assert first.products == [[1.0, 0.0], [0.0, -5.0]]
    assert (first.sum, first.bias, first.result) == (-4.0, 1.0, -3.0)
    assert [s.out for s in r.steps] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # sizes come from engine.arithmetic: (3 - 1*(2-1) - 1 + 0 + 0) / 1 + 1 = 2
    assert r.output_size[0].worked == "⌊(3 − 1·(2 − 1) − 1 + 0 + 0) / 1⌋ + 1 = ⌊1 / 1⌋ + 1 = 1 + 1 = 2"


def test_conv_padding_stride_dilation_by_hand():
    # 3x3 input padded by 1 -> 5x5; kernel 2x2 dilated by 2 spans 3; stride 2: (3 + 2 - 3) / 2 + 1 = 2
    r = conv_steps(GRID, [[1, 1], [1, 1]], padding=1, stride=2, dilation=2)
    assert r.padded_input[0] == [0.0] * 5 and r.padded_input[1] == [0.0, 1.0, 2.0, 3.0, 0.0]
    # out (0,0) reads padded (0,0) (0,2) (2,0) (2,2) = 0 + 0 + 0 + 5 = 5
    # out (0,1) reads padded (0,2) (0,4) (2,2) (2,4) = 0 + 0 + 5 + 0 = 5
    # out (1,1) reads padded (2,2) (2,4) (4,2) (4,4) = 5
    assert r.output == [[5.0, 5.0], [5.0, 5.0]]
    step = r.steps[1]
    assert (step.rows, step.cols, step.origin) == ((0, 2), (2, 4), (0, 2))


def test_multichannel_conv_is_the_lectures_volume():
    # a 2-channel 2x2 volume and one 2x1x1 filter: out = 1*ch0 + 10*ch1 + bias 0.5
    x = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    r = conv_steps(x, [[[1]], [[10]]], bias=0.5)
    assert r.output == [[51.5, 62.5], [73.5, 84.5]]
    assert r.steps[0].values == [[[1.0]], [[5.0]]] and r.steps[0].products == [[[1.0]], [[50.0]]]


def test_max_pool_by_hand_with_argmax_and_ceil_mode():
    r = pool_steps(GRID, 2, kind="max", ceil_mode=True)
    # stride defaults to 2; (3 - 2) / 2 = 0.5 -> ceil 1 + 1 = 2: the last windows hang past the grid
    assert r.output == [[5.0, 6.0], [8.0, 9.0]]
    last = r.steps[-1]
    assert last.values == [[9.0, None], [None, None]] and last.argmax == (2, 2)
    assert r.steps[0].argmax == (1, 1)


def test_max_pool_first_maximum_wins_like_pytorch():
    r = pool_steps([[7, 7], [7, 7]], 2, kind="max")
    assert r.steps[0].argmax == (0, 0)


def test_avg_pool_divisors_by_hand():
    # padding 1: window (0,0) covers padded rows 0-1, cols 0-1: 0 + 0 + 0 + 1, divisor 4 (padding counted)
    r = pool_steps(GRID, 2, padding=1, kind="avg")
    assert r.output == [[0.25, 1.25], [2.75, 7.0]]
    assert (r.steps[0].sum, r.steps[0].divisor) == (1.0, 4)
    # without counting padding: window (0,0) averages the single input cell 1 -> 1.0; (0,1): (2+3)/2
    r = pool_steps(GRID, 2, padding=1, kind="avg", count_include_pad=False)
    assert r.output == [[1.0, 2.5], [5.5, 7.0]]
    assert [s.divisor for s in r.steps] == [1, 2, 2, 4]


def test_result_is_json():
    json.dumps(conv_steps(GRID, [[1]]).to_dict())
    json.dumps(pool_steps(GRID, 2, padding=1, kind="max").to_dict())  # padding is None, not -inf


# --- equal to the engine's layers -------------------------------------------------------------------


def test_conv_equals_engine_layer_random_sweep():
    rng = np.random.default_rng(3)
    for _ in range(40):
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 10)), int(rng.integers(3, 10))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        dilation = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        padding = [[int(rng.integers(0, 3)), int(rng.integers(0, 3))] for _ in range(2)]
        x = rng.standard_normal((c, h, w))
        k = rng.standard_normal((c, kh, kw))
        bias = float(rng.standard_normal())
        try:
            mine = conv_steps(x, k, bias, stride, padding, dilation)
        except EngineError:  # the kernel does not fit: the engine must refuse too
            continue
        theirs, _ = conv_forward(x[None], k[None], np.array([bias]), stride, [tuple(p) for p in padding], dilation)
        np.testing.assert_allclose(mine.output, theirs[0, 0], rtol=1e-12, atol=1e-12,
                                   err_msg=f"playground vs engine conv: {stride} {padding} {dilation}")
        assert [s.result for s in mine.steps] == [v for row in mine.output for v in row]


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_equals_engine_layer_random_sweep(kind):
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(60):
        h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        k = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        stride = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        padding = [int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1))]
        dilation = [1, 1] if kind == "avg" else [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        ceil = bool(rng.integers(0, 2))
        include = bool(rng.integers(0, 2))
        x = rng.standard_normal((h, w))
        try:
            mine = pool_steps(x, k, stride, padding, dilation, kind, ceil, include)
        except EngineError:
            continue
        pads = [(p, p) for p in padding]
        if kind == "max":
            theirs, _ = max_pool_forward(x[None, None], k, stride, pads, dilation, ceil)
        else:
            theirs, _ = avg_pool_forward(x[None, None], k, stride, pads, ceil, include)
        np.testing.assert_allclose(mine.output, theirs[0, 0], rtol=1e-12, atol=1e-12,
                                   err_msg=f"playground vs engine {kind} pool: {k} {stride} {padding} {ceil}")
        checked += 1
    assert checked > 30


def test_against_pytorch(torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 8))
    k = rng.standard_normal((2, 3, 2))
    mine = conv_steps(x, k, 0.25, stride=[2, 1], padding=[1, 2], dilation=[1, 2])
    theirs = F.conv2d(torch.tensor(x[None]), torch.tensor(k[None]), torch.tensor([0.25], dtype=torch.float64),
                      stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    np.testing.assert_allclose(mine.output, theirs[0, 0].numpy(), rtol=1e-12, atol=1e-12)
    g = x[0]
    mine = pool_steps(g, 3, 2, 1, 2, "max", ceil_mode=True)
    theirs = F.max_pool2d(torch.tensor(g[None, None]), 3, 2, 1, 2, ceil_mode=True)
    np.testing.assert_allclose(mine.output, theirs[0, 0].numpy())
    mine = pool_steps(g, 3, 2, 1, kind="avg", ceil_mode=True, count_include_pad=False)
    theirs = F.avg_pool2d(torch.tensor(g[None, None]), 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(mine.output, theirs[0, 0].numpy(), rtol=1e-12)


# --- limits and errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: conv_steps(np.zeros((33, 4)), [[1]]), "up to 32×32"),
        (lambda: conv_steps(np.zeros((17, 4, 4)), np.zeros((17, 1, 1))), "up to 16 channels"),
        (lambda: conv_steps(np.zeros((2, 4, 4)), [[1]]), "the kernel has 1 channel(s) but the input has 2"),
        (lambda: conv_steps([[1, 2], [3]], [[1]]), "grid of numbers"),
        (lambda: conv_steps([[1, float("nan")]], [[1]]), "not a finite number"),
        (lambda: conv_steps(GRID, [[1]], bias=float("inf")), "bias must be a finite number"),
        (lambda: conv_steps(GRID, np.ones((4, 4))), "kernel spans 4 but the padded input is 3"),
        (lambda: conv_steps(np.zeros((16, 3, 3)), np.zeros((16, 3, 3))), None),  # 1 step: fine
        (lambda: pool_steps(GRID, 2, kind="median"), "'max' or 'avg'"),
        (lambda: pool_steps(GRID, 2, padding=2), "more than half the kernel"),
        (lambda: pool_steps(GRID, 2, kind="avg", dilation=2), "no dilation"),
        (lambda: pool_steps(np.zeros((3, 3, 3)), 2), "(H, W)"),
        (lambda: pool_steps(GRID, 2, stride=0), "stride must be at least 1"),
    ],
)
def test_errors(call, message):
    if message is None:
        call()
        return
    with pytest.raises(EngineError) as info:
        call()
    assert message in str(info.value)


def test_work_is_bounded():
    # 32x32 padded by 16 with a 1x1 kernel: 64 x 64 = 4096 windows is the limit; padding 17: 66 x 66 = 4356
    assert len(conv_steps(np.zeros((32, 32)), [[1]], padding=16).steps) == 4096
    with pytest.raises(EngineError, match="at most 4096"):
        conv_steps(np.zeros((32, 32)), [[1]], padding=17)
    # 16 channels x 16x16 kernel over 32x32: 17*17 = 289 windows x 4096 values > 2**17
    with pytest.raises(EngineError, match="values under the window"):
        conv_steps(np.zeros((16, 32, 32)), np.zeros((16, 16, 16)))
    assert len(conv_steps(np.zeros((32, 32)), [[1]]).steps) == 1024
