"""engine/compare.py: the difference of two activations of one node and its summary, on numbers worked out by hand,
and the edge cases (identical inputs, zero vectors, opposite vectors, mismatched shapes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.compare import ChannelChange, activation_difference, cosine_similarity
from engine.errors import ShapeError

# three channels of 1 × 2:   a              b              a − b
#                          [[3, 4]]       [[4, 3]]       [[-1, 1]]   mean |d| 1, max 1 (first at column 0)
#                          [[0, 0]]       [[0, 2]]       [[ 0, -2]]  mean |d| 1, max 2 (at column 1)
#                          [[1, 1]]       [[1, 1]]       [[ 0, 0]]   mean |d| 0, max 0
A = np.array([[[3, 4]], [[0, 0]], [[1, 1]]], dtype=np.float32)
B = np.array([[[4, 3]], [[0, 2]], [[1, 1]]], dtype=np.float32)


def test_hand_worked_maps():
    result = activation_difference(A, B)
    np.testing.assert_array_equal(result.difference, [[[-1, 1]], [[0, -2]], [[0, 0]]])
    assert result.difference.dtype == np.float32 and result.difference.shape == (3, 1, 2)
    np.testing.assert_array_equal(result.channel_mean_abs, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(result.channel_max_abs, [1.0, 2.0, 0.0])
    assert result.max_abs == 2.0
    assert result.mean_abs == pytest.approx(4 / 6, rel=1e-15)  # (1 + 1 + 2) / 6 numbers
    # ‖a‖² = 9 + 16 + 1 + 1 = 27, ‖b‖² = 16 + 9 + 4 + 1 + 1 = 31, a · b = 12 + 12 + 0 + 1 + 1 = 26
    assert result.norm_a == pytest.approx(math.sqrt(27), rel=1e-15)
    assert result.norm_b == pytest.approx(math.sqrt(31), rel=1e-15)
    assert result.cosine_similarity == pytest.approx(26 / math.sqrt(27 * 31), rel=1e-15)
    # ‖d‖² = 1 + 1 + 4 = 6: relative change √6 / √27 = √2 / 3
    assert result.norm_difference == pytest.approx(math.sqrt(6), rel=1e-15)
    assert result.relative_change == pytest.approx(math.sqrt(2) / 3, rel=1e-15)
    # channels 0 and 1 tie on mean |d| = 1: the lower first; the largest |d| of channel 0 is at both columns (first)
    assert result.top_channels == (ChannelChange(0, 1.0, 1.0, (0, 0)), ChannelChange(1, 1.0, 2.0, (0, 1)),
                                   ChannelChange(2, 0.0, 0.0, (0, 0)))


def test_top_channels_largest_mean_first_and_at_most_k():
    a = np.zeros((3, 2, 2), dtype=np.float32)
    b = np.zeros((3, 2, 2), dtype=np.float32)
    b[0, 1, 0] = 2.0  # mean |d| 0.5
    b[1] = -2.0  # mean |d| 2
    b[2, 0, 1] = 4.0  # mean |d| 1, max 4 at (0, 1)
    result = activation_difference(a, b, top_k=2)
    assert [c.channel for c in result.top_channels] == [1, 2]
    assert result.top_channels[1] == ChannelChange(2, 1.0, 4.0, (0, 1))
    assert [c.channel for c in activation_difference(a, b, top_k=10).top_channels] == [1, 2, 0]


def test_a_vector_is_one_channel():
    # a = (3, 4), b = (4, 3): cos = 24 / 25, d = (−1, 1), ‖d‖ = √2, ‖a‖ = 5
    result = activation_difference(np.array([3, 4], np.float32), np.array([4, 3], np.float32))
    assert result.cosine_similarity == pytest.approx(0.96, rel=1e-15)
    assert result.relative_change == pytest.approx(math.sqrt(2) / 5, rel=1e-15)
    assert result.channel_mean_abs.shape == (1,) and result.channel_mean_abs[0] == 1.0
    assert result.top_channels == (ChannelChange(0, 1.0, 1.0, (0,)),)


def test_a_sequence_channel_position_is_its_one_index():
    a = np.zeros((2, 5), np.float32)
    b = np.zeros((2, 5), np.float32)
    b[1, 3] = 1.0
    assert activation_difference(a, b, top_k=1).top_channels == (ChannelChange(1, 0.2, 1.0, (3,)),)


def test_identical_inputs_differ_by_zero_and_have_cosine_one():
    x = np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32)
    result = activation_difference(x, x.copy())
    assert not result.difference.any() and result.max_abs == 0.0 and result.mean_abs == 0.0
    assert result.cosine_similarity == 1.0 and result.relative_change == 0.0
    assert [c.channel for c in result.top_channels] == [0, 1, 2, 3]  # every tie: channel order


def test_zero_vectors():
    zero = np.zeros((2, 2), np.float32)
    ones = np.ones((2, 2), np.float32)
    both = activation_difference(zero, zero)
    assert both.cosine_similarity == 1.0 and both.relative_change is None  # identical, but nothing to be relative to
    a_zero = activation_difference(zero, ones)
    assert a_zero.cosine_similarity == 0.0 and a_zero.relative_change is None
    b_zero = activation_difference(ones, zero)
    assert b_zero.cosine_similarity == 0.0 and b_zero.relative_change == 1.0  # ‖a − 0‖ / ‖a‖


def test_opposite_and_scaled_activations():
    x = np.array([1.0, -2.0, 2.0], np.float32)
    opposite = activation_difference(x, -x)
    assert opposite.cosine_similarity == -1.0 and opposite.relative_change == pytest.approx(2.0, rel=1e-15)
    assert cosine_similarity(x, 3 * x) == pytest.approx(1.0, rel=1e-15)  # direction, not length


def test_the_difference_is_float32_subtraction_exactly():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 5, 5)).astype(np.float32)
    b = rng.standard_normal((8, 5, 5)).astype(np.float32)
    result = activation_difference(a, b)
    np.testing.assert_array_equal(result.difference, a - b)
    d = (a - b).astype(np.float64)  # and the summary recomputed another way
    np.testing.assert_allclose(result.channel_mean_abs, np.abs(d).mean(axis=(1, 2)), rtol=1e-12)
    x, y = a.astype(np.float64), b.astype(np.float64)
    assert result.cosine_similarity == pytest.approx(float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))),
                                                     rel=1e-12)
    # negative control: a wrong answer is caught by the same comparison
    assert not np.array_equal(result.difference, b - a)


def test_mismatched_or_empty_shapes_are_refused_with_both_shapes():
    with pytest.raises(ShapeError, match=r"\[2, 3\] and \[3, 2\]"):
        activation_difference(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="no numbers"):
        activation_difference(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ShapeError, match="at least one"):
        activation_difference(A, B, top_k=0)
