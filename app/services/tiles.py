"""Every channel of a feature map tiled into one greyscale PNG, with the layout the front-end needs to address it.

Channel ``c`` sits at row ``c // columns``, column ``c % columns``; its top-left pixel is
``(column * (tile_width + gap), row * (tile_height + gap))``. Grey 0..255 maps linearly onto
``[low, high]`` of that channel (``scale="channel"``) or of the whole layer (``scale="layer"``); the
front-end applies its own colour scale to the grey levels.
"""

from __future__ import annotations

import io
import math
from typing import Literal

import numpy as np
from PIL import Image

from app.schemas.runs import TileLayout

Scale = Literal["channel", "layer"]
GAP = 1


def as_channels(activation: np.ndarray) -> np.ndarray:
    """One sample's activation as ``(tiles, height, width)``: (C, H, W) as is, (C, L) -> (C, 1, L),
    (F,) -> (1, 1, F), (C, D, H, W) -> (C * D, H, W)."""
    return activation.reshape(tiled_shape(activation.shape))


def tiled_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(tiles, height, width)`` that :func:`as_channels` gives for an activation of ``shape``."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    if len(shape) == 4:
        return shape[0] * shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def tile_layout(
    shape: tuple[int, ...], ranges: list[list[float]] | None = None, scale: Scale = "channel"
) -> TileLayout:
    """The grid for an activation of ``shape`` (one sample, no batch axis): near-square overall."""
    tiles, height, width = tiled_shape(shape)
    columns = min(tiles, max(1, math.ceil(math.sqrt(tiles * height / width))))
    rows = math.ceil(tiles / columns)
    return TileLayout(tiles=tiles, rows=rows, columns=columns, tile_height=height, tile_width=width, gap=GAP,
                      width=columns * width + (columns - 1) * GAP, height=rows * height + (rows - 1) * GAP,
                      scale=scale, ranges=ranges or [])


def render_tiles(activation: np.ndarray, scale: Scale = "channel") -> tuple[bytes, TileLayout]:
    """``activation``: one sample, e.g. (C, H, W). Returns the PNG bytes and the layout (with each tile's range)."""
    maps = as_channels(np.asarray(activation, dtype=np.float32))
    if scale == "layer":
        low = np.full(len(maps), maps.min()) if maps.size else np.zeros(len(maps))
        high = np.full(len(maps), maps.max()) if maps.size else np.zeros(len(maps))
    else:
        low, high = maps.min(axis=(1, 2)), maps.max(axis=(1, 2))
    span = np.where(high > low, high - low, 1.0)
    grey = np.clip((maps - low[:, None, None]) / span[:, None, None] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    layout = tile_layout(tuple(activation.shape), [[float(lo), float(hi)] for lo, hi in zip(low, high)], scale)
    canvas = np.zeros((layout.height, layout.width), dtype=np.uint8)
    for index, tile in enumerate(grey):
        top = (index // layout.columns) * (layout.tile_height + GAP)
        left = (index % layout.columns) * (layout.tile_width + GAP)
        canvas[top:top + layout.tile_height, left:left + layout.tile_width] = tile
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), layout
