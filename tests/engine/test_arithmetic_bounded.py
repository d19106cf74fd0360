"""output_size answers fast, whatever the numbers (the API passes the caller's numbers straight in).

Regression tests for a hang: the suggestions scanned every total padding up to 2·stride and every
divisor up to √numerator, so a stride or padding of 10^30 never returned.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.arithmetic import MAX_DIVISOR_SEARCH, _symmetric_total, output_size


def brute_symmetric_total(base: int, S: int, total: int) -> int | None:
    """The search the closed form replaces: the smallest even t > total with (base + t) % S == 0."""
    for t in range(total + 1, total + 2 * S + 1):
        if t % 2 == 0 and (base + t) % S == 0:
            return t
    return None


def test_symmetric_total_matches_the_search():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        base, S, total = int(rng.integers(0, 200)), int(rng.integers(1, 40)), int(rng.integers(0, 30))
        assert _symmetric_total(base, S, total) == brute_symmetric_total(base, S, total), (base, S, total)


def test_symmetric_total_negative_control():
    # an even stride and an odd residue: no symmetric padding exists, and both say so
    assert brute_symmetric_total(1, 4, 0) is None and _symmetric_total(1, 4, 0) is None


@pytest.mark.parametrize("args", [
    dict(in_size=5, kernel=3, stride=10**30),
    dict(in_size=5, kernel=3, stride=3, padding=10**30),
    dict(in_size=5, kernel=3, stride=7, padding=(0, 10**400)),
    dict(in_size=10**6, kernel=3, stride=10**12 + 39, padding=(10**13, 5)),
    dict(in_size=7, kernel=2, stride=4, padding=2 * 10**5, kind="pool", ceil_mode=True),
])
def test_huge_numbers_answer_fast(args):
    start = time.perf_counter()
    result = output_size(**args)
    assert time.perf_counter() - start < 0.5
    assert result.size >= 1 and not result.exact
    for suggestion in result.suggestions:  # every suggestion really makes the division exact
        if suggestion.parameter == "padding":
            checked = output_size(args["in_size"], args["kernel"], args.get("stride", 1), suggestion.value,
                                  kind=args.get("kind", "conv"), ceil_mode=args.get("ceil_mode", False))
            assert checked.exact and checked.size == suggestion.size


def test_stride_suggestions_kept_for_ordinary_numbers():
    result = output_size(32, 5, 2)  # 27 / 2: strides 1 and 3 divide 27
    assert [s.value for s in result.suggestions if s.parameter == "stride"] == [1, 3]
    assert MAX_DIVISOR_SEARCH >= 10**6  # every input the app's playground and lecture examples use
