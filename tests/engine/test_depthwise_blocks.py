"""The depthwise path runs in blocks of (sample, channel) rows spread over threads: splitting the work must not
change a single number. Tiny blocks (one to three rows, a short last block) and two or three threads are
compared bit for bit with one block on one thread, and the forward pass with the naive loops."""

from __future__ import annotations

import numpy as np
import pytest

from engine.layers.conv import conv_backward, conv_forward
from engine.layers.fast import depthwise, threads
from engine.layers.naive import conv_naive

CASES = [
    # (x shape, w shape, stride, padding pairs, dilation)
    ((3, 5, 9, 8), (5, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # stride 1: input gradient is a forward pass
    ((2, 7, 11, 10), (7, 1, 5, 5), (2, 2), ((1, 2), (1, 2)), (1, 1)),  # stride 2, uneven padding
    ((2, 3, 8, 9), (6, 1, 3, 2), (2, 1), ((0, 1), (2, 0)), (1, 2)),  # multiplier 2, dilated, mixed stride
    ((2, 3, 5, 6, 5), (3, 1, 3, 3, 2), (2, 1, 1), ((1, 1), (0, 1), (1, 0)), (1, 1, 2)),  # 3D: wide grid
    ((4, 3, 13), (3, 1, 4), (3,), ((2, 1),), (1,)),  # 1D
]


def _run(case, rng_seed: int = 7):
    x_shape, w_shape, stride, padding, dilation = case
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    out, cache = conv_forward(x, w, b, stride, padding, dilation, x_shape[1])
    dout = rng.standard_normal(out.shape)
    return (out, *conv_backward(dout, cache)), (x, w, b, stride, padding, dilation, x_shape[1])


@pytest.fixture
def restore_settings():
    saved = depthwise.BLOCK_BYTES
    yield
    depthwise.BLOCK_BYTES = saved
    threads.set_num_threads(None)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("block_rows, thread_count", [(1, 1), (2, 2), (3, 3)])
def test_blocks_and_threads_give_the_same_numbers(case, block_rows, thread_count, restore_settings, monkeypatch):
    threads.set_num_threads(1)
    depthwise.BLOCK_BYTES = 1 << 40  # one block
    whole, args = _run(case)
    np.testing.assert_allclose(whole[0], conv_naive(*args), rtol=1e-12, atol=1e-12)

    monkeypatch.setattr(depthwise, "_block_rows", lambda plan, itemsize: block_rows)
    threads.set_num_threads(thread_count)
    calls = []
    real_run_parts = depthwise.run_parts

    def counting(work, total, min_part=1):
        results = real_run_parts(work, total, min_part)
        calls.append(len(results))
        return results

    monkeypatch.setattr(depthwise, "run_parts", counting)
    split, _ = _run(case)
    assert calls and max(calls) <= thread_count, "more parts than threads"
    if thread_count > 1:
        assert max(calls) > 1, "no call ran on more than one thread"
    for name, mine, theirs in zip(("out", "dx", "dw", "db"), split, whole):
        np.testing.assert_array_equal(mine, theirs, err_msg=f"{name}: blocks of {block_rows} rows on "
                                                            f"{thread_count} threads differ from one block")


def test_run_parts_covers_every_item_once_in_order(restore_settings):
    threads.set_num_threads(3)
    seen = np.zeros(10, dtype=int)

    def work(begin, end):
        seen[begin:end] += 1
        return (begin, end)

    parts = threads.run_parts(work, 10)
    assert parts == [(0, 3), (3, 6), (6, 10)]
    assert seen.tolist() == [1] * 10
    assert threads.run_parts(work, 10, min_part=6) == [(0, 10)]  # too little work to split


def test_thread_count_comes_from_the_environment(restore_settings, monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # OpenBLAS's setting: not the engine's
    threads.set_num_threads(None)
    assert threads.num_threads() == 1
    monkeypatch.setenv(threads.ENV_VAR, "2")
    threads.set_num_threads(None)
    assert threads.num_threads() == 2
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_num_threads(0)


@pytest.mark.parametrize("spatial", [1, 2, 3])
def test_depthwise_gradients_match_the_dense_path_on_random_sweeps(spatial):
    """The depthwise path (stride phases, flipped sub-kernels) against the same convolution written as a dense
    one (groups 1, zero weights off the diagonal, im2col), over strides, dilations, paddings and multipliers."""
    rng = np.random.default_rng(40 + spatial)
    for trial in range(15 if spatial < 3 else 8):
        c, multiplier = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(1, 5, spatial))
        stride = tuple(int(s) for s in rng.integers(1, 4, spatial))
        dilation = tuple(int(d) for d in rng.integers(1, 4, spatial))
        padding = tuple((int(b), int(a)) for b, a in rng.integers(0, 3, (spatial, 2)))
        sizes = tuple(int(d * (k - 1) + 1 + rng.integers(0, 6)) for k, d in zip(kernel, dilation))
        x = rng.standard_normal((2, c, *sizes))
        w = rng.standard_normal((c * multiplier, 1, *kernel))
        dense = np.zeros((c * multiplier, c, *kernel))
        for k in range(c * multiplier):
            dense[k, k // multiplier] = w[k, 0]
        out, cache = conv_forward(x, w, None, stride, padding, dilation, c)
        ref_out, ref_cache = conv_forward(x, dense, None, stride, padding, dilation, 1)
        what = f"trial {trial}: c {c} x{multiplier}, k {kernel}, stride {stride}, dilation {dilation}, pad {padding}"
        np.testing.assert_allclose(out, ref_out, atol=1e-12, err_msg=what)
        dout = rng.standard_normal(out.shape)
        dx, dw, _ = conv_backward(dout, cache)
        ref_dx, ref_dw, _ = conv_backward(dout, ref_cache)
        np.testing.assert_allclose(dx, ref_dx, atol=1e-12, err_msg=f"dx, {what}")
        np.testing.assert_allclose(dw[:, 0], ref_dw[np.arange(c * multiplier), np.arange(c * multiplier) // multiplier],
                                   atol=1e-12, err_msg=f"dw, {what}")
