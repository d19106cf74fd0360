"""The shipped MNIST digits: shapes, split, scaling, normalisation constants and real content."""

from __future__ import annotations

import numpy as np
import pytest

from engine.datasets import mnist
from engine.datasets.mnist import MEAN, STD, load_mnist, load_raw


def test_raw_file_holds_10000_uint8_digits_with_all_classes():
    images, labels = load_raw()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert images.max() == 255 and images.min() == 0
    assert not images.flags.writeable  # cached: callers must not alter the shared copy


def test_shipped_file_is_small():
    assert mnist.DATA_FILE.stat().st_size < 3_000_000


def test_split_is_8000_then_2000_disjoint_and_covers_all():
    x_train, y_train = load_mnist("train", normalize=False)
    x_test, y_test = load_mnist("test", normalize=False)
    x_all, y_all = load_mnist("all", normalize=False)
    assert x_train.shape == (8000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([x_train, x_test]), x_all)
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), y_all)
    train_rows = {row.tobytes() for row in x_train}
    assert not any(row.tobytes() in train_rows for row in x_test)
    # the shuffle spreads every class over both splits
    assert (np.bincount(y_test, minlength=10) > 150).all()


def test_unnormalised_pixels_are_in_unit_range_with_white_digits_on_black():
    x, _ = load_mnist("test", normalize=False)
    assert x.min() == 0.0 and x.max() == 1.0
    # MNIST style: background (border) black, strokes white
    border = np.concatenate([x[:, 0, 0, :], x[:, 0, -1, :], x[:, 0, :, 0], x[:, 0, :, -1]], axis=1)
    assert border.mean() < 0.01
    assert x[:, 0, 10:18, 10:18].mean() > 0.2


def test_mean_and_std_are_those_of_the_training_split():
    x, _ = load_mnist("train", normalize=False)
    assert abs(x.astype(np.float64).mean() - MEAN) < 1e-4
    assert abs(x.astype(np.float64).std() - STD) < 1e-4
    z, _ = load_mnist("train")
    assert abs(z.astype(np.float64).mean()) < 1e-3 and abs(z.astype(np.float64).std() - 1) < 1e-3
    np.testing.assert_allclose(z, (x - np.float32(MEAN)) / np.float32(STD), rtol=1e-6)


def test_classes_differ_like_digits_do():
    """Real data, not noise: the class-mean images of a 1 and a 0 differ, and nearest-mean classifies well."""
    x_train, y_train = load_mnist("train", normalize=False)
    x_test, y_test = load_mnist("test", normalize=False)
    means = np.stack([x_train[y_train == c].reshape(-1, 784).mean(0) for c in range(10)])
    # a '1' is a single stroke: far less ink than a '0'
    assert means[1].sum() < 0.6 * means[0].sum()
    dist = ((x_test.reshape(-1, 784)[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == y_test).mean()
    assert 0.7 < accuracy < 0.9  # nearest class mean: 80% here (about 82% on all of MNIST)


def test_limit_and_bad_arguments():
    x, y = load_mnist("train", limit=5)
    assert x.shape == (5, 1, 28, 28) and y.shape == (5,)
    with pytest.raises(ValueError, match="split must be"):
        load_mnist("validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        load_mnist("train", limit=0)
