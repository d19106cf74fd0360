"""The depthwise path's shifted copies, checked element by element against ``np.pad`` and plain indexing.

``copy_rows`` has three ways to fill the copies: whole rows shifted at once (stride 1, "same" width), copies
made from a later offset's copy moved by one column (stride a multiple of the dilation), and one strided
copy per offset. Each is compared with the definition, ``rows[phase, n*c, j, *m, w] = xpad[..., start + m *
stride, j * dilation + w * stride]`` (zero beyond the padded input), and each test checks that its path ran.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.arithmetic import output_length
from engine.layers.fast import depthwise_copies, strided_copy
from engine.layers.fast.depthwise_copies import copy_rows, plan_depthwise


def _reference(x: np.ndarray, plan, pads) -> np.ndarray:
    """The copies by their definition, one value at a time."""
    n, c = x.shape[:2]
    xpad = np.pad(x, [(0, 0), (0, 0), *pads])
    kw, out_w = plan.kernel[-1], plan.out_sizes[-1]
    rows = np.zeros((len(plan.starts), n * c, kw, *plan.lead_sizes, out_w), dtype=x.dtype)
    flat_x = xpad.reshape(n * c, *xpad.shape[2:])
    for phase, start in enumerate(plan.starts):
        for m in itertools.product(*(range(size) for size in plan.lead_sizes)):
            lead = [p + i * s for p, i, s in zip(start, m, plan.stride)]
            if any(position >= size for position, size in zip(lead, plan.padded_sizes)):
                continue  # rows past the padded input stay zero
            for j in range(kw):
                columns = [j * plan.dilation[-1] + w * plan.stride[-1] for w in range(out_w)]
                rows[(phase, slice(None), j, *m)] = flat_x[(slice(None), *lead, columns)]
    return rows.reshape(len(plan.starts), n * c, kw, -1)


def _case(rng, spatial: int, stride_one: bool):
    kernel = [int(rng.integers(1, 5)) for _ in range(spatial)]
    dilation = [int(rng.integers(1, 3)) for _ in range(spatial)]
    stride = [1 if stride_one else int(rng.integers(1, 4)) for _ in range(spatial)]
    pads, sizes = [], []
    for k, d in zip(kernel, dilation):
        reach = d * (k - 1)
        if stride_one and rng.random() < 0.7:  # "same": as many outputs as inputs
            before = int(rng.integers(0, reach + 1))
            pads.append((before, reach - before))
        else:
            pads.append((int(rng.integers(0, reach + 1)), int(rng.integers(0, reach + 1))))
        sizes.append(int(reach + 1 + rng.integers(0, 7)))
    padded = [m + b + a for m, (b, a) in zip(sizes, pads)]
    out = [output_length(p, k, s, (0, 0), d) for p, k, s, d in zip(padded, kernel, stride, dilation)]
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 4)), *sizes)).astype(np.float32)
    return x, plan_depthwise(padded, kernel, stride, dilation, out), pads


def _counting(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(depthwise_copies, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(depthwise_copies, name, counted)
    return calls


@pytest.mark.parametrize("spatial", [1, 2, 3])
@pytest.mark.parametrize("stride_one", [True, False])
def test_copies_match_their_definition(spatial, stride_one, monkeypatch):
    whole_rows, by_phase = _counting(monkeypatch, "_copy_shifted_runs"), _counting(monkeypatch, "_copy_by_phase")
    rng = np.random.default_rng(100 * spatial + stride_one)
    for _ in range(40):
        x, plan, pads = _case(rng, spatial, stride_one)
        np.testing.assert_array_equal(copy_rows(x, plan, pads), _reference(x, plan, pads),
                                      err_msg=f"{plan} pads={pads}")
    assert by_phase  # the sweep reached both paths where both apply
    assert whole_rows or not stride_one


def test_stride_one_same_width_shifts_whole_rows(monkeypatch):
    calls = _counting(monkeypatch, "_copy_shifted_runs")
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 7)).astype(np.float32)
    plan = plan_depthwise((8, 9), (3, 3), (1, 1), (1, 1), (6, 7))
    np.testing.assert_array_equal(copy_rows(x, plan, ((1, 1), (1, 1))), _reference(x, plan, ((1, 1), (1, 1))))
    assert calls == [1]


def test_stride_two_makes_the_first_offset_from_the_third(monkeypatch):
    """With stride 2 and a 3-wide kernel, offset 0's copy is offset 2's moved by one column: a wrong first
    column (x's first column where the padding is) would show here."""
    calls = _counting(monkeypatch, "_copy_by_phase")
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 10)).astype(np.float32)
    for pads in (((1, 1), (1, 1)), ((0, 1), (0, 1)), ((1, 0), (2, 2))):
        padded = (9 + sum(pads[0]), 10 + sum(pads[1]))
        out = tuple(output_length(p, 3, 2, (0, 0), 1) for p in padded)
        plan = plan_depthwise(padded, (3, 3), (2, 2), (1, 1), out)
        np.testing.assert_array_equal(copy_rows(x, plan, pads), _reference(x, plan, pads), err_msg=str(pads))
    assert len(calls) == 3


def test_the_reference_notices_a_shifted_column():
    """Negative control: the comparison above fails when one column of the copies is wrong."""
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 8)).astype(np.float32)
    plan = plan_depthwise((9, 10), (3, 3), (2, 2), (1, 1), (4, 4))
    rows = copy_rows(x, plan, ((1, 1), (1, 1))).reshape(2, 2, 3, *plan.lead_sizes, 4)
    rows[:, :, 0, :, 0] = rows[:, :, 1, :, 0]  # offset 0's first column from the wrong offset
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(rows.reshape(2, 2, 3, -1), _reference(x, plan, ((1, 1), (1, 1))))


@pytest.mark.parametrize("start", [0, 1, 2, 3])
@pytest.mark.parametrize("width", [7, 8])
def test_every_other_value_read_in_pairs_is_exact(start, width):
    """Every bit pattern survives (NaN payloads, -0.0, subnormals), odd starts read across the pair boundary,
    and a last value whose partner would lie past the row's end is still copied."""
    rng = np.random.default_rng(start * 10 + width)
    bits = rng.integers(0, 2**32, size=(2, 3, 5, width), dtype=np.uint64).astype(np.uint32)
    rows = bits.view(np.float32)[:, :, ::2]  # rows two apart, as in a stride-2 phase
    count = len(range(start, width, 2))
    target = np.zeros((2, 3, rows.shape[2], count), dtype=np.float32)
    assert strided_copy.pairs_readable(rows)
    strided_copy.copy_every_other(target, rows, slice(start, start + 2 * (count - 1) + 1, 2))
    np.testing.assert_array_equal(target.view(np.uint32), rows[..., start::2].view(np.uint32))


def test_pairs_are_not_read_from_doubles_or_strided_rows():
    assert not strided_copy.pairs_readable(np.zeros((1, 1, 4, 4)))  # float64: the plain copy
    assert not strided_copy.pairs_readable(np.zeros((1, 1, 4, 8), np.float32)[..., ::2])
