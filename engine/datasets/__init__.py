"""Datasets shipped with the engine, so that training and tests work offline."""

from engine.datasets.mnist import MEAN, STD, TEST_SIZE, TRAIN_SIZE, load_mnist

__all__ = ["MEAN", "STD", "TEST_SIZE", "TRAIN_SIZE", "load_mnist"]
