"""Every fast convolution path against the loops of ``engine.layers.naive``, forward and backward.

``engine.layers.fast.dispatch.conv_path`` picks one of four implementations (im2col, wide, pointwise,
depthwise); the transposed convolution runs through the same three functions the other way round; step-2
columns are copied in pairs (``strided_copy``). Each sweep below is built for one branch and records the
branches the dispatch actually took, so that a comparison cannot quietly test another path. The loop-form
backward itself is checked against central differences, with a negative control.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.gradcheck import check_function
from engine.layers.conv import conv_backward, conv_forward, conv_transpose_backward, conv_transpose_forward
from engine.layers.fast import dispatch, strided_copy
from engine.layers.naive import conv_backward_naive, conv_naive, conv_transpose_backward_naive, conv_transpose_naive

TOL = 1e-6  # float64 central differences pass far below this


def _same(mine: np.ndarray | None, theirs: np.ndarray | None, what: str, rtol: float = 1e-12) -> None:
    """Equal up to ``rtol`` of the larger array's scale (float64 sums in another order differ by ~1e-16)."""
    assert (mine is None) == (theirs is None), f"{what}: one side is None"
    if mine is None:
        return
    assert mine.shape == theirs.shape, f"{what}: shape mine {mine.shape} vs naive {theirs.shape}"
    scale = max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
    err = float(np.max(np.abs(mine.astype(np.float64) - theirs), initial=0.0))
    assert err <= rtol * scale, f"{what}: max |fast - naive| = {err:.3g} (scale {scale:.3g})"


def _recording(monkeypatch, module, name: str) -> list:
    """Every value ``module.name`` returns from now on, in order (the function itself runs as before)."""
    results: list = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args, **kwargs: results.append(original(*args, **kwargs)) or results[-1])
    return results


@pytest.fixture
def paths_taken(monkeypatch) -> list[str]:
    """The names ``conv_path`` returned while the test ran, in order."""
    return _recording(monkeypatch, dispatch, "conv_path")


# --- the four branches of the dispatch ------------------------------------------------------------------
def _sizes(rng, kernel, dilation, padding, most: int) -> tuple[int, ...]:
    """Input sizes the kernel fits in once padded."""
    return tuple(int(max(1, d * (k - 1) + 1 - b - a) + rng.integers(0, most))
                 for k, d, (b, a) in zip(kernel, dilation, padding))


def _im2col_case(rng, spatial):
    """Strided or many-channel convolutions, often grouped (1x1 grouped kernels read the input as it is)."""
    groups = int(rng.choice([1, 2, 3]))
    kernel = tuple(int(k) for k in rng.integers(1, 4, spatial))
    stride = tuple(int(s) for s in rng.integers(1, 4, spatial))
    if groups > 1 and rng.random() < 0.3:  # grouped 1x1 at stride 1: the input is the patch matrix, no copy
        kernel, stride = (1,) * spatial, (1,) * spatial
    if groups == 1 and all(s == 1 for s in stride):
        stride = (2, *stride[1:])  # one group at stride 1 would be the wide or pointwise path
    c_group = 2 if groups > 1 else int(rng.integers(1, 3))  # one channel per group would be depthwise
    return groups, c_group, groups * int(rng.integers(1, 3)), kernel, stride


def _wide_case(rng, spatial):
    """Stride 1, one group, at most WIDE_MAX_CHANNELS outputs, a kernel larger than 1x1."""
    kernel = tuple(int(k) for k in rng.integers(1, 4, spatial))
    kernel = (max(2, kernel[0]), *kernel[1:])
    return 1, int(rng.integers(1, 4)), int(rng.integers(1, 5)), kernel, (1,) * spatial


def _pointwise_case(rng, spatial):
    """1x1 kernels at stride 1, one group, any number of outputs (padding adds output positions that read
    only zeros)."""
    return 1, int(rng.integers(1, 5)), int(rng.integers(1, 40)), (1,) * spatial, (1,) * spatial


def _depthwise_case(rng, spatial):
    """One input channel per group, with channel multipliers."""
    c = int(rng.integers(2, 5))
    kernel = tuple(int(k) for k in rng.integers(1, 5, spatial))
    stride = tuple(int(s) for s in rng.integers(1, 4, spatial))
    return c, 1, c * int(rng.integers(1, 3)), kernel, stride


BRANCHES = {"im2col": _im2col_case, "wide": _wide_case, "pointwise": _pointwise_case, "depthwise": _depthwise_case}


@pytest.mark.parametrize("spatial", [1, 2, 3])
@pytest.mark.parametrize("branch", list(BRANCHES))
def test_each_dispatch_branch_matches_the_loops_forward_and_backward(branch, spatial, paths_taken):
    rng = np.random.default_rng(len(branch) * 10 + spatial)
    for trial in range(8 if spatial < 3 else 4):
        groups, c_group, k_out, kernel, stride = BRANCHES[branch](rng, spatial)
        dilation = tuple(int(d) for d in rng.integers(1, 3, spatial))
        padding = tuple((int(b), int(a)) for b, a in rng.integers(0, 3, (spatial, 2)))
        sizes = _sizes(rng, kernel, dilation, padding, 6 if spatial < 3 else 3)
        x = rng.standard_normal((int(rng.integers(1, 3)), c_group * groups, *sizes))
        w = rng.standard_normal((k_out, c_group, *kernel))
        b = rng.standard_normal(k_out) if rng.random() < 0.7 else None
        args = (stride, padding, dilation, groups)
        what = f"{branch} trial {trial}: x{x.shape} w{w.shape} stride {stride} pad {padding} dilation {dilation}"

        paths_taken.clear()
        out, cache = conv_forward(x, w, b, *args)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv_backward(dout, cache)
        assert set(paths_taken) == {branch}, f"{what}: took {paths_taken}"

        _same(out, conv_naive(x, w, b, *args), f"{what} out")
        for name, mine, theirs in zip(("dx", "dw", "db"), (dx, dw, db), conv_backward_naive(dout, x, w, b, *args)):
            _same(mine, theirs, f"{what} {name}")


def test_the_transposed_convolution_matches_the_loops_through_every_branch(paths_taken):
    """It runs the three functions the other way round (its forward pass is a convolution's input gradient):
    the sweep is checked to have gone through all four branches."""
    rng = np.random.default_rng(17)
    seen: set[str] = set()
    for trial in range(40):
        spatial = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2]))
        kernel = tuple(int(k) for k in rng.integers(1, 4, spatial))
        stride = tuple(int(s) for s in rng.integers(1, 3, spatial))
        dilation = tuple(int(d) for d in rng.integers(1, 3, spatial))
        if trial % 4 == 0:  # pointwise: 1x1 at stride 1, no output padding
            kernel, stride, dilation = (1,) * spatial, (1,) * spatial, (1,) * spatial
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        padding = tuple((int(rng.integers(0, k)), int(rng.integers(0, k))) for k in kernel)
        if trial % 4 == 0:
            output_padding, padding = (0,) * spatial, ((0, 0),) * spatial
        k_group = 1 if trial % 4 == 1 else int(rng.integers(1, 3))  # 1 per group: the depthwise branch
        x = rng.standard_normal((int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)),
                                 *rng.integers(2, 5 if spatial < 3 else 4, spatial)))
        w = rng.standard_normal((x.shape[1], k_group, *kernel))
        b = rng.standard_normal(k_group * groups) if rng.random() < 0.7 else None
        args = (stride, padding, output_padding, dilation, groups)
        what = f"trial {trial}: x{x.shape} w{w.shape} {args}"

        paths_taken.clear()
        out, cache = conv_transpose_forward(x, w, b, *args)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv_transpose_backward(dout, cache)
        seen.update(paths_taken)

        _same(out, conv_transpose_naive(x, w, b, *args), f"{what} out")
        naive = conv_transpose_backward_naive(dout, x, w, b, *args)
        for name, mine, theirs in zip(("dx", "dw", "db"), (dx, dw, db), naive):
            _same(mine, theirs, f"{what} {name}")
    assert seen == set(dispatch.PATHS), f"branches taken: {sorted(seen)}"


# --- step-2 columns copied in pairs ---------------------------------------------------------------------
@pytest.mark.parametrize("depthwise", [False, True], ids=["im2col", "depthwise"])
def test_columns_copied_in_pairs_match_the_loops_and_the_plain_copy(depthwise, paths_taken, monkeypatch):
    """The pair copy reads 4-byte values only, so this sweep is float32 (compared with the loops on the same
    float32 values within float32 rounding) and, bit for bit, with the same run through NumPy's plain copy."""
    calls = _recording(monkeypatch, strided_copy, "copy_every_other")
    rng = np.random.default_rng(5 + depthwise)
    for trial in range(6):
        spatial = 1 + trial % 3
        c = int(rng.integers(2, 4))
        groups, c_group = (c, 1) if depthwise else (1, c)
        kernel = tuple(int(k) for k in rng.integers(2, 4, spatial))
        stride = (*rng.integers(1, 3, spatial - 1).tolist(), 2)  # step 2 along the last axis
        padding = tuple((int(b), int(a)) for b, a in rng.integers(0, 2, (spatial, 2)))
        sizes = _sizes(rng, kernel, (1,) * spatial, padding, 6 if spatial < 3 else 3)
        x = rng.standard_normal((2, c, *sizes)).astype(np.float32)
        w = rng.standard_normal((c * (2 if depthwise else 20), c_group, *kernel)).astype(np.float32)
        args = (stride, padding, (1,) * spatial, groups)

        paths_taken.clear()
        out, cache = conv_forward(x, w, None, *args)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        grads = conv_backward(dout, cache)
        assert set(paths_taken) == {"depthwise" if depthwise else "im2col"}
        what = f"trial {trial}: x{x.shape} w{w.shape} {args}"
        _same(out, conv_naive(x, w, None, *args), f"{what} out", rtol=1e-5)
        for name, mine, theirs in zip(("dx", "dw"), grads, conv_backward_naive(dout, x, w, None, *args)):
            _same(mine, theirs, f"{what} {name}", rtol=1e-5)

        with monkeypatch.context() as plain:
            plain.setattr(strided_copy, "pairs_readable", lambda rows: False)
            out_plain, cache_plain = conv_forward(x, w, None, *args)
            grads_plain = conv_backward(dout, cache_plain)
        for name, mine, theirs in zip(("out", "dx", "dw"), (out, *grads), (out_plain, *grads_plain)):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{what} {name}: pairs vs plain copy")
    assert calls, "no step-2 columns were copied in pairs"


# --- the loop-form backward against central differences ------------------------------------------------
NAIVE_CASES = [
    # (x shape, w shape, stride, padding pairs, dilation, groups)
    ((2, 2, 6), (3, 2, 3), (2,), ((1, 2),), (1,), 1),
    ((1, 4, 5, 6), (4, 2, 2, 3), (2, 1), ((1, 0), (0, 2)), (1, 2), 2),
    ((1, 3, 5, 5), (6, 1, 3, 3), (1, 2), ((1, 1), (2, 0)), (2, 1), 3),  # depthwise, multiplier 2
    ((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (1, 2, 1), ((1, 0), (0, 1), (1, 1)), (1, 1, 2), 1),
]


def _naive_errors(case, corrupt=lambda dx, dw, db: (dx, dw, db)) -> list[float]:
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
    args = (stride, padding, dilation, groups)

    def analytic(dout):
        return corrupt(*conv_backward_naive(dout, *arrays, *args))

    return check_function(lambda x, w, b: conv_naive(x, w, b, *args), analytic, arrays)


@pytest.mark.parametrize("case", NAIVE_CASES, ids=lambda c: f"x{c[0]}-w{c[1]}-g{c[5]}")
def test_the_loop_backward_matches_central_differences(case):
    errors = _naive_errors(case)
    assert max(errors) < TOL, f"relative errors (x, w, b): {errors}"


def test_negative_control_the_check_catches_a_wrong_loop_backward():
    """dx 1% too large, a spatially flipped dw, a db off by one element: each fails the check above."""
    case = NAIVE_CASES[1]
    assert _naive_errors(case, lambda dx, dw, db: (dx * 1.01, dw, db))[0] > 1e-3
    assert _naive_errors(case, lambda dx, dw, db: (dx, dw[:, :, ::-1, ::-1], db))[1] > 1e-2
    assert _naive_errors(case, lambda dx, dw, db: (dx, dw, db + np.eye(len(db))[0]))[2] > 1e-2


def test_the_transposed_loop_backward_matches_central_differences():
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((4, 1, 2, 3)), rng.standard_normal(2)]
    args = ((2, 3), ((0, 1), (1, 0)), (1, 2), (1, 2), 2)
    errors = check_function(lambda x, w, b: conv_transpose_naive(x, w, b, *args),
                            lambda dout: conv_transpose_backward_naive(dout, *arrays, *args), arrays)
    assert max(errors) < TOL, f"relative errors (x, w, b): {errors}"
