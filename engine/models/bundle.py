"""A model as the visualiser uses it: a graph, its weights, its labels and how to prepare its input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.graph import Graph


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image (H, W, 3) uint8 becomes the model's input tensor (1, C, size, size).

    ``resize`` is the length the image's *shorter* side is scaled to, then the centre
    ``crop`` x ``crop`` square is kept (for digits: the whole image is scaled to ``crop``).
    Pixels are scaled to [0, 1], optionally inverted (white digits on black, as in MNIST), then
    ``(x - mean) / std`` per channel. ``grayscale`` makes a single channel.
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    grayscale: bool = False
    invert: bool = False

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """``image: (crop, crop, C) uint8`` -> ``(1, C, crop, crop) float32``, C = 1 or 3."""
        x = image.astype(np.float32) / 255.0
        if x.ndim == 2:
            x = x[:, :, None]
        if self.grayscale and x.shape[2] != 1:
            x = (x[:, :, :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
        if self.invert:
            x = 1.0 - x
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def as_dict(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "grayscale": self.grayscale, "invert": self.invert}


@dataclass
class ModelBundle:
    """Everything needed to run and explain one model."""

    id: str
    name: str
    task: str  # e.g. "imagenet classification", "digit classification"
    graph: Graph
    params: dict[str, np.ndarray]
    labels: list[str]
    preprocessing: Preprocessing
    source: str  # where the weights came from, with licence
    description: str = ""
    #: node id whose activation is the learned attention map, if the model has one
    attention_node: str | None = None
    #: default layer for class activation maps (last spatial layer before pooling)
    cam_layer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
