"""Every channel of a feature map tiled into one greyscale PNG, with the layout the front-end needs to address it.

Channel ``c`` sits at row ``c // columns``, column ``c % columns``; its top-left pixel is
``(column * (tile_width + gap), row * (tile_height + gap))``. Grey 0..255 maps linearly onto
``[low, high]`` of that channel (``scale="channel"``) or of the whole layer (``scale="layer"``); the
front-end applies its own colour scale to the grey levels.

A sequence ``(T, F)`` (``time_axis=0``: a recurrent node's output, or what one reads) is one map of T rows, one per
time step, and F columns, rather than T tiles one pixel high: a digit read row by row looks like the digit.

Encoding was most of the cost of an explorer session (EfficientNet-Lite0: 143 nodes, 22 M grey pixels, about
1 s with Pillow, whose adaptive row filters and deflate run on every pixel), so the PNG is written here: rows
unfiltered, deflated (zlib's fastest, run-length strategy) only where that pays, i.e. mostly-zero maps such as
ReLU outputs, and stored as they are otherwise. PNG is lossless: the pixels are Pillow's, only the bytes differ
(tests/app/test_tiles_png.py; scripts/bench_session.py prints the figures).
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Literal

import numpy as np

from app.schemas.runs import TileLayout

Scale = Literal["channel", "layer"]
GAP = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Deflate a PNG when at least this share of its grey levels are 0. Deflating costs ~12 ns a pixel (zlib level 1,
# run-length strategy, on a 2-vCPU machine) and saves 40-70% of a mostly-zero map, but only 5-15% of a dense one
# (conv and batch-norm outputs); storing costs ~1 ns. On EfficientNet-Lite0 and the cat photo, 0.5 deflates 21
# of 143 maps (11% of the pixels): 20.6 MB instead of 22.2 MB stored or 16.6 MB all deflated, for ~15 ms.
DEFLATE_ZERO_SHARE = 0.5


def as_channels(activation: np.ndarray, time_axis: int | None = None) -> np.ndarray:
    """One sample's activation as ``(tiles, height, width)``: (C, H, W) as is, (C, L) -> (C, 1, L),
    (F,) -> (1, 1, F), (C, D, H, W) -> (C * D, H, W); a sequence (T, F) with ``time_axis=0`` -> (1, T, F)."""
    return activation.reshape(tiled_shape(activation.shape, time_axis))


def is_sequence(shape: tuple[int, ...], time_axis: int | None) -> bool:
    """A sequence (T, F) drawn as one map, time steps as rows."""
    return time_axis == 0 and len(shape) == 2


def tiled_shape(shape: tuple[int, ...], time_axis: int | None = None) -> tuple[int, int, int]:
    """``(tiles, height, width)`` that :func:`as_channels` gives for an activation of ``shape``."""
    if is_sequence(shape, time_axis):
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    if len(shape) == 4:
        return shape[0] * shape[1], shape[2], shape[3]
    return 1, 1, math.prod(shape)


def tile_layout(
    shape: tuple[int, ...], ranges: list[list[float]] | None = None, scale: Scale = "channel",
    time_axis: int | None = None,
) -> TileLayout:
    """The grid for an activation of ``shape`` (one sample, no batch axis): near-square overall; a sequence
    (``time_axis=0``) is one tile, time down its rows."""
    tiles, height, width = tiled_shape(shape, time_axis)
    columns = min(tiles, max(1, math.ceil(math.sqrt(tiles * height / width))))
    rows = math.ceil(tiles / columns)
    return TileLayout(tiles=tiles, rows=rows, columns=columns, tile_height=height, tile_width=width, gap=GAP,
                      width=columns * width + (columns - 1) * GAP, height=rows * height + (rows - 1) * GAP,
                      scale=scale, ranges=ranges or [], time="rows" if is_sequence(shape, time_axis) else None)


def tile_ranges(maps: np.ndarray, scale: Scale = "channel",
                per_tile: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of ``maps: (tiles, H, W)`` float32, the values grey 0 and 255 stand for: ``(low, high)``.
    ``per_tile``: each tile's own minimum and maximum (``scale="channel"``), when they are known already."""
    if per_tile is not None:
        low, high = per_tile
        if scale == "layer":  # the smallest minimum is the layer's minimum, exactly (NaN included)
            return np.full(len(maps), low.min()), np.full(len(maps), high.max())
        return low, high
    if scale == "layer":
        low = np.full(len(maps), maps.min()) if maps.size else np.zeros(len(maps))
        high = np.full(len(maps), maps.max()) if maps.size else np.zeros(len(maps))
        return low, high
    return maps.min(axis=(1, 2)), maps.max(axis=(1, 2))


def scanlines(maps: np.ndarray, low: np.ndarray, high: np.ndarray, layout: TileLayout) -> np.ndarray:
    """The PNG's rows, ``(height, 1 + width)`` uint8: each a filter byte (0: none), then its pixels, every tile of
    ``maps: (tiles, H, W)`` float32 at its place in ``layout``, gaps and spare cells 0.

    Grey is ``clip((maps - low) / span * 255 + 0.5, 0, 255)`` per tile, truncated, ``span = high - low`` (1 where
    that is not positive): done step by step in one float buffer (the same float32 operations, so the same grey
    levels) and cast straight into place. ``low`` and ``high`` must be each tile's (or the layer's) minimum and
    maximum, as :func:`tile_ranges` gives them: then ``0 <= maps - low <= span`` holds after rounding too (rounding
    is monotonic), every value is already in ``[0.5, 255.5]`` or NaN (from NaN or infinite values), which clipping
    leaves NaN, so the clip is left out."""
    span = np.where(high > low, high - low, 1.0)
    scaled = np.subtract(maps, low[:, None, None])
    scaled /= span[:, None, None]
    scaled *= 255.0
    scaled += 0.5
    rows, columns, height, width = layout.rows, layout.columns, layout.tile_height, layout.tile_width
    # 1 + layout.width == columns * (width + GAP): a row is a filter byte then, per column, a tile row and a gap
    # (the filter byte standing in for the first gap), so the buffer splits evenly into cells
    lines = np.zeros((rows * (height + GAP), columns * (width + GAP)), dtype=np.uint8)
    cells = lines.reshape(rows, height + GAP, columns, width + GAP)[:, :height, :, 1:]  # (row, y, column, x)
    full = (len(maps) // columns) * columns
    grid = scaled[:full].reshape(-1, columns, height, width).transpose(0, 2, 1, 3)
    np.copyto(cells[:len(grid)], grid, casting="unsafe")  # float -> uint8 as astype does: truncation
    if full < len(maps):  # the last row is not full
        np.copyto(cells[-1, :, :len(maps) - full], scaled[full:].transpose(1, 0, 2), casting="unsafe")
    return lines[:layout.height]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_scanlines(lines: np.ndarray, deflate: bool) -> bytes:
    """``lines: (H, 1 + W)`` uint8 from :func:`scanlines` as an 8-bit greyscale PNG: deflated (zlib's fastest,
    run-length strategy) or stored."""
    if deflate:
        compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        data = compressor.compress(lines) + compressor.flush()
    else:
        data = zlib.compress(lines, 0)
    height, width = lines.shape[0], lines.shape[1] - 1
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey; deflate, filters, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def render_png(activation: np.ndarray, scale: Scale = "channel",
               per_tile: tuple[np.ndarray, np.ndarray] | None = None,
               time_axis: int | None = None) -> tuple[bytes, TileLayout]:
    """``activation``: one sample, e.g. (C, H, W). Returns the PNG bytes and the layout, without ranges (what the
    PNG's X-Tile-Layout header holds). ``per_tile``: as for :func:`tile_ranges`; ``time_axis``: as for
    :func:`as_channels`."""
    maps = as_channels(np.asarray(activation, dtype=np.float32), time_axis)
    layout = tile_layout(tuple(activation.shape), scale=scale, time_axis=time_axis)
    return encode_png(maps, *tile_ranges(maps, scale, per_tile), layout), layout


def render_tiles(activation: np.ndarray, scale: Scale = "channel") -> tuple[bytes, TileLayout]:
    """``activation``: one sample, e.g. (C, H, W). Returns the PNG bytes and the layout (with each tile's range)."""
    maps = as_channels(np.asarray(activation, dtype=np.float32))
    low, high = tile_ranges(maps, scale)
    layout = tile_layout(tuple(activation.shape), np.stack([low, high], axis=1).tolist(), scale)
    return encode_png(maps, low, high, layout), layout


def encode_png(maps: np.ndarray, low: np.ndarray, high: np.ndarray, layout: TileLayout) -> bytes:
    """``maps: (tiles, H, W)`` float32 as the tiled PNG, deflated when at least :data:`DEFLATE_ZERO_SHARE` of
    its grey levels are 0, else stored."""
    lines = scanlines(maps, low, high, layout)
    padding = lines.size - maps.size  # filter bytes, gaps and spare cells: all 0
    return encode_scanlines(lines, np.count_nonzero(lines == 0) - padding >= DEFLATE_ZERO_SHARE * maps.size)
