"""Shape arithmetic: hand-worked cases, the explanations' numbers, and random sweeps against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from engine.arithmetic import output_size, volume_output
from engine.errors import EngineError

# --- hand-worked --------------------------------------------------------------------------------


def test_lecture_example_32_kernel_5_stride_2():
    # (32 - 1*(5-1) - 1 + 0 + 0) / 2 = 27 / 2 = 13.5 -> floor 13, + 1 = 14
    r = output_size(32, 5, stride=2)
    assert r.size == 14
    assert not r.exact
    assert r.fraction == (27, 2)
    assert r.worked == "⌊(32 − 1·(5 − 1) − 1 + 0 + 0) / 2⌋ + 1 = ⌊27 / 2⌋ + 1 = ⌊13.5⌋ + 1 = 14"
    assert r.formula == "⌊(W − d·(F − 1) − 1 + P_before + P_after) / S⌋ + 1"
    # 27 = 2*13 + 1: one input column is left over after the last full window
    assert "stride 2 does not divide 32 − 5 + 0 = 27" in r.explanation
    assert "14.5" in r.explanation
    assert "last 1 column of the input is never read" in r.explanation


def test_exact_same_padding_keeps_size():
    # (32 - 2 - 1 + 1 + 1) / 1 = 31 -> + 1 = 32
    r = output_size(32, 3, stride=1, padding=1)
    assert (r.size, r.exact, r.explanation, r.suggestions) == (32, True, "", ())
    assert r.worked.endswith("= ⌊31 / 1⌋ + 1 = 31 + 1 = 32")


def test_dilation_spans_d_times_k_minus_1_plus_1():
    # kernel 3, dilation 2 spans 5: (10 - 2*2 - 1 + 0 + 0) / 1 + 1 = 6
    assert output_size(10, 3, dilation=2).size == 6
    # with stride 2: (10 - 5 + 2) / 2 = 3.5 -> 3 + 1 = 4
    r = output_size(10, 3, stride=2, padding=1, dilation=2)
    assert (r.size, r.fraction) == (4, (7, 2))


def test_asymmetric_padding():
    # (7 - 3 + 0 + 1) / 2 = 2.5 -> 2 + 1 = 3: the odd column skipped is the after-padding
    r = output_size(7, 3, stride=2, padding=(0, 1))
    assert (r.size, r.exact) == (3, False)
    assert "is padding, so no input is lost" in r.explanation


def test_remainder_split_between_input_and_padding():
    # (10 - 3 + 1 + 1) = 9 = 1*5 + 4: 9 // 5 + 1 = 2; the 4 positions left over are 3 input columns + 1 padding
    r = output_size(10, 3, stride=5, padding=1)
    assert r.size == 2
    assert "last 3 columns of the input are never read (and 1 of padding)" in r.explanation


def test_suggestions_make_it_exact_and_report_their_size():
    r = output_size(32, 5, stride=2)
    by_kind = {(s.parameter, s.value): s for s in r.suggestions}
    # one more column of padding: 28 / 2 + 1 = 15
    assert by_kind[("padding", (0, 1))].size == 15
    # 27 is divisible by 1, 3 (the strides next to 2): 27/3 + 1 = 10
    assert by_kind[("stride", 3)].size == 10
    assert by_kind[("stride", 1)].size == 28
    # inputs 31 (26/2 + 1 = 14) and 33 (28/2 + 1 = 15)
    assert by_kind[("in_size", 31)].size == 14
    assert by_kind[("in_size", 33)].size == 15
    for s in r.suggestions:  # every suggestion really is exact
        kwargs = {"in_size": 32, "kernel": 5, "stride": 2, "padding": (0, 0)}
        kwargs[s.parameter] = s.value
        again = output_size(**kwargs)
        assert again.exact and again.size == s.size, s


def test_symmetric_padding_suggestion_when_possible():
    # (29 - 3) = 26 = 6*4 + 2: adding 2 in total, i.e. padding 1 on each side, gives 28 / 4 + 1 = 8
    r = output_size(29, 3, stride=4)
    sym = [s for s in r.suggestions if s.parameter == "padding" and s.value == (1, 1)]
    assert sym and sym[0].size == 8 and "1 on each side" in sym[0].text


def test_pool_ceil_mode_keeps_partial_window():
    # (5 - 2) / 2 = 1.5: floor -> 2, ceil -> 3 (the last window starts at 4 < 5 + 0)
    assert output_size(5, 2, 2, kind="pool").size == 2
    r = output_size(5, 2, 2, kind="pool", ceil_mode=True)
    assert r.size == 3
    assert r.worked == "⌈(5 − 1·(2 − 1) − 1 + 0 + 0) / 2⌉ + 1 = ⌈3 / 2⌉ + 1 = ⌈1.5⌉ + 1 = 3"
    assert "ceil_mode keeps the last partial window" in r.explanation


def test_pool_ceil_mode_drops_window_starting_in_right_padding():
    # W=4, K=2, S=2, P=1: (4 + 2 - 2) / 2 = 2 -> exact, 3. W=5, K=3, S=3, P=1: (5 + 2 - 3) / 3 = 1.33:
    # ceil -> 2 + 1 = 3, the last window would start at padded 6 >= 5 + 1 = 6 -> dropped -> 2
    r = output_size(5, 3, stride=3, padding=1, kind="pool", ceil_mode=True)
    assert r.size == 2
    assert "in the right padding, so it is dropped" in r.worked
    assert "PyTorch drops it" in r.explanation


def test_transposed_formula():
    # (4 - 1)*2 - 1 - 1 + 1*(3 - 1) + 1 + 1 = 8
    r = output_size(4, 3, stride=2, padding=1, kind="transposed", output_padding=1)
    assert (r.size, r.exact, r.fraction) == (8, True, None)
    assert r.worked == "(4 − 1)·2 − 1 − 1 + 1·(3 − 1) + 1 + 1 = 8"
    # the conv with the same settings maps 7 and 8 to 4: (7 + 2 - 3)//2 + 1 = 4, (8 + 2 - 3)//2 + 1 = 4
    assert output_size(7, 3, 2, 1).size == 4 and output_size(8, 3, 2, 1).size == 4
    assert "from 7 to 8 to the same 4" in r.notes[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_size": 3, "kernel": 4, "dilation": 2, "padding": 1}, "kernel spans 7 (2·(4 − 1) + 1 with dilation 2) "
                                                                   "but the padded input is 5 (3 + 1 + 1)"),
        ({"in_size": 3, "kernel": 5}, "the output would be empty"),
        ({"in_size": 0, "kernel": 1}, "input size must be at least 1"),
        ({"in_size": 4, "kernel": 2, "stride": 0}, "stride must be at least 1"),
        ({"in_size": 4, "kernel": 2, "padding": -1}, "must be at least 0"),
        ({"in_size": 4, "kernel": 2, "padding": [1, 2, 3]}, "[before, after] pair"),
        ({"in_size": 4, "kernel": 2, "ceil_mode": True}, "ceil_mode applies to pooling only"),
        ({"in_size": 4, "kernel": 2, "output_padding": 1}, "output_padding applies to transposed"),
        ({"in_size": 4, "kernel": 3, "stride": 2, "kind": "transposed", "output_padding": 2}, "smaller than"),
        ({"in_size": 1, "kernel": 1, "padding": 1, "kind": "transposed"}, "the output would be empty"),
        ({"in_size": 4, "kernel": 2, "kind": "deconv"}, "kind must be one of"),
        ({"in_size": 4.5, "kernel": 2}, "whole number"),
    ],
)
def test_errors_say_what_is_wrong(kwargs, message):
    with pytest.raises(EngineError) as info:
        output_size(**kwargs)
    assert message in str(info.value)


def test_kernel_does_not_fit_advice_is_right():
    with pytest.raises(EngineError) as info:
        output_size(3, 4, dilation=2, padding=1)
    # the advice: input >= 5 with padding 1+1, or padding 4 in total with input 3: both fit exactly
    assert "input of at least 5" in str(info.value) and "padding of at least 4" in str(info.value)
    assert output_size(5, 4, dilation=2, padding=1).size == 1
    assert output_size(3, 4, dilation=2, padding=2).size == 1


def test_pool_padding_note():
    assert output_size(8, 2, 2, padding=2, kind="pool").notes
    assert not output_size(8, 2, 2, padding=1, kind="pool").notes


def test_axis_names_the_formula_and_the_noun():
    r = output_size(32, 5, stride=2, axis="H")
    assert r.formula.startswith("⌊(H − ") and "1 row of the input" in r.explanation


# --- volumes (the lecture's W×H×D view) -----------------------------------------------------------


def test_volume_lecture_example():
    # 32x32x3 input, six 5x5x3 filters, stride 1, no padding: (32 - 5)/1 + 1 = 28 -> 28x28x6
    v = volume_output(32, 32, 3, kernel=5, num_filters=6)
    assert v.out_shape == (28, 28, 6)
    assert v.filter_shape == (5, 5, 3)
    # (5*5*3 + 1) * 6 = 76 * 6 = 456
    assert (v.weights, v.biases, v.params) == (450, 6, 456)
    # 75 MACs per output value, 28*28*6 = 4704 values
    assert v.macs == 75 * 4704
    assert any("(5·5·3 + 1)·6 = 76·6 = 456" in line for line in v.explanation)


def test_volume_true_3d():
    # 16x16x8 volume with 2 channels, ten 3x3x3 filters, stride 1, padding 1 in plane, depth stride 2 no pad:
    # W, H: (16 - 3 + 2)/1 + 1 = 16; D: (8 - 3)/2 = 2.5 -> 2 + 1 = 3; params (3*3*3*2 + 1)*10 = 550
    v = volume_output(16, 16, 8, kernel=3, padding=1, num_filters=10, depth_kernel=3, depth_stride=2, channels=2)
    assert v.out_shape == (16, 16, 3, 10)
    assert v.params == 550
    assert not v.axes["D"].exact


# --- against PyTorch ------------------------------------------------------------------------------


def test_conv_and_transposed_sizes_match_torch(torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 150:
        W, K, S, D = (int(v) for v in (rng.integers(1, 20), rng.integers(1, 6), rng.integers(1, 5), rng.integers(1, 4)))
        pb, pa = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        if W + pb + pa < D * (K - 1) + 1:
            with pytest.raises(EngineError):
                output_size(W, K, S, (pb, pa), D)
            continue
        x = F.pad(torch.zeros(1, 1, W), (pb, pa))
        theirs = F.conv1d(x, torch.zeros(1, 1, K), stride=S, dilation=D).shape[-1]
        assert output_size(W, K, S, (pb, pa), D).size == theirs, (W, K, S, pb, pa, D)
        # transposed (symmetric padding in PyTorch)
        op = int(rng.integers(0, max(S, D)))
        expected = (W - 1) * S - 2 * pb + D * (K - 1) + op + 1
        if expected >= 1:
            theirs_t = F.conv_transpose1d(torch.zeros(1, 1, W), torch.zeros(1, 1, K), stride=S, padding=pb,
                                          output_padding=op, dilation=D).shape[-1]
            mine = output_size(W, K, S, pb, D, kind="transposed", output_padding=op).size
            assert mine == theirs_t, ("transposed", W, K, S, pb, D, op)
        checked += 1


def test_pool_sizes_match_torch_with_ceil_mode(torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    checked = 0
    while checked < 150:
        W, K, S, D = (int(v) for v in (rng.integers(1, 20), rng.integers(1, 6), rng.integers(1, 5), rng.integers(1, 3)))
        P = int(rng.integers(0, K // 2 + 1))  # PyTorch: padding <= kernel_size / 2
        ceil = bool(rng.integers(0, 2))
        if D * (K - 1) + 1 > W + 2 * P:
            continue
        theirs = F.max_pool1d(torch.zeros(1, 1, W), K, S, P, D, ceil_mode=ceil).shape[-1]
        mine = output_size(W, K, S, P, D, kind="pool", ceil_mode=ceil)
        assert mine.size == theirs, (W, K, S, P, D, ceil)
        assert not mine.notes
        checked += 1


def test_the_engine_layers_produce_as_many_outputs_as_the_formula_says():
    """The layers compute their sizes with this module's formula; here their real outputs are counted."""
    from engine.arithmetic import output_length, transposed_output_length
    from engine.layers.conv import conv_forward, conv_transpose_forward
    from engine.layers.pool import max_pool_forward

    rng = np.random.default_rng(2)
    for _ in range(60):
        W, K, S, D = (int(v) for v in (rng.integers(1, 20), rng.integers(1, 5), rng.integers(1, 4), rng.integers(1, 3)))
        pads = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        if W + sum(pads) < D * (K - 1) + 1:
            continue
        x = np.zeros((1, 1, W))
        conv, _ = conv_forward(x, np.zeros((1, 1, K)), None, (S,), (pads,), (D,), 1)
        assert conv.shape[-1] == output_length(W, K, S, pads, D), (W, K, S, pads, D)
        if max(pads) <= (D * (K - 1) + 1) // 2:  # pooling windows must each cover the input
            ceil = bool(rng.integers(0, 2))
            pooled, _ = max_pool_forward(x, (K,), (S,), (pads,), (D,), ceil)
            assert pooled.shape[-1] == output_length(W, K, S, pads, D, ceil), (W, K, S, pads, D, ceil)
        op = int(rng.integers(0, max(S, D)))
        if (W - 1) * S + D * (K - 1) + op + 1 > sum(pads):
            up, _ = conv_transpose_forward(x, np.zeros((1, 1, K)), None, (S,), (pads,), (op,), (D,), 1)
            assert up.shape[-1] == transposed_output_length(W, K, S, pads, D, op)
