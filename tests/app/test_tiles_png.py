"""The tiled feature-map PNGs: the same pixels and layout as the Pillow encoder they replace, for every shape,
scale and value range, whether deflated or stored."""

from __future__ import annotations

import io
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.services import tiles
from app.services.tiles import encode_scanlines, render_png, render_tiles, scanlines, tile_layout, tile_ranges

SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"


def pillow_render_tiles(activation: np.ndarray, scale: str = "channel") -> tuple[bytes, tiles.TileLayout]:
    """The encoder before the session-cost work (commit cbb3eda), verbatim: the reference for the pixels."""
    maps = tiles.as_channels(np.asarray(activation, dtype=np.float32))
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
        top = (index // layout.columns) * (layout.tile_height + tiles.GAP)
        left = (index % layout.columns) * (layout.tile_width + tiles.GAP)
        canvas[top:top + layout.tile_height, left:left + layout.tile_width] = tile
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), layout


def decode(png: bytes) -> np.ndarray:
    """The pixels, after Pillow has checked every chunk's CRC and the zlib stream."""
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L"
        return np.asarray(image)


def assert_same_as_pillow(activation: np.ndarray, scale: str = "channel") -> bytes:
    expected_png, expected_layout = pillow_render_tiles(activation, scale)
    png, layout = render_tiles(activation, scale)
    assert layout.model_dump(exclude={"ranges"}) == expected_layout.model_dump(exclude={"ranges"})
    np.testing.assert_array_equal(np.array(layout.ranges), np.array(expected_layout.ranges))  # NaN == NaN here
    expected = decode(expected_png)
    got = decode(png)
    assert got.shape == expected.shape and got.dtype == expected.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    lean_png, lean_layout = render_png(activation, scale)  # what GET .../nodes/{node}.png sends
    assert lean_png == png and lean_layout.ranges == []
    maps = tiles.as_channels(np.asarray(activation, dtype=np.float32))
    per_tile = maps.min(axis=(1, 2)), maps.max(axis=(1, 2))  # as the run store keeps them
    assert render_png(activation, scale, per_tile)[0] == png
    assert lean_layout.model_dump(exclude={"ranges"}) == expected_layout.model_dump(exclude={"ranges"})
    return png


def random_maps(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3


SHAPES = [(4, 12, 12), (7, 5, 9), (1, 1, 1), (3, 1, 1), (10,), (1000,), (6, 17), (2, 3, 4, 5), (13, 3, 3),
          (32, 28, 28), (5, 1, 7)]


@pytest.mark.parametrize("scale", ["channel", "layer"])
@pytest.mark.parametrize("shape", SHAPES)
def test_pixels_and_layout_are_pillows_for_every_shape(shape, scale):
    assert_same_as_pillow(random_maps(shape), scale)


@pytest.mark.parametrize("scale", ["channel", "layer"])
def test_sparse_maps_are_deflated_and_dense_ones_stored_with_the_same_pixels(scale):
    relu = np.maximum(random_maps((16, 20, 20), seed=1) - 2, 0)  # ~75% zeros: deflated
    dense = random_maps((16, 20, 20), seed=2)
    sparse_png = assert_same_as_pillow(relu, scale)
    dense_png = assert_same_as_pillow(dense, scale)
    assert len(sparse_png) < 0.6 * relu.size
    assert len(dense_png) > dense.size  # stored: the pixels, a filter byte per row and the chunks


def test_deflated_and_stored_scanlines_decode_alike():
    maps = tiles.as_channels(random_maps((9, 6, 6), seed=3))
    layout = tile_layout(maps.shape)
    lines = scanlines(maps, *tile_ranges(maps), layout)
    assert lines.shape == (layout.height, layout.width + 1) and not lines[:, 0].any()  # filter byte 0: none
    stored, deflated = decode(encode_scanlines(lines, False)), decode(encode_scanlines(lines, True))
    np.testing.assert_array_equal(stored, deflated)
    np.testing.assert_array_equal(stored, lines[:, 1:])


def test_constant_extreme_and_tiny_ranges_are_pillows():
    maps = random_maps((8, 6, 6), seed=4)
    maps[0] = 0  # constant: all grey 0
    maps[1] = -7.5
    maps[2] *= 1e-38  # subnormal spans
    maps[3] = np.linspace(-3e38, 3e38, 36, dtype=np.float32).reshape(6, 6)  # high - low overflows to inf
    maps[4, 0, 0] = 1e30  # one outlier
    maps[5] = np.round(maps[5])  # many ties
    maps[6] = np.float32(1) + np.arange(36, dtype=np.float32).reshape(6, 6) * np.finfo(np.float32).eps
    for scale in ("channel", "layer"):
        with np.errstate(over="ignore", invalid="ignore"):
            assert_same_as_pillow(maps, scale)


def test_non_finite_values_are_pillows():
    maps = random_maps((6, 5, 5), seed=5)
    maps[0, 1, 1] = np.inf
    maps[1, 2, 2] = -np.inf
    maps[2, 0, 0] = np.nan
    maps[3, :, :] = np.inf
    for scale in ("channel", "layer"):
        with np.errstate(invalid="ignore"):
            assert_same_as_pillow(maps, scale)


def test_png_rows_are_unfiltered_and_the_ihdr_says_8_bit_grey():
    png, layout = render_tiles(random_maps((4, 12, 12)))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert int.from_bytes(png[16:20], "big") == layout.width and int.from_bytes(png[20:24], "big") == layout.height
    assert png[24:29] == bytes([8, 0, 0, 0, 0])  # bit depth 8, greyscale, deflate, adaptive filtering, no interlace
    assert png.endswith(b"IEND" + zlib.crc32(b"IEND").to_bytes(4, "big"))


@cache
def efficientnet_run() -> dict[str, np.ndarray]:
    from app.imaging import load_image_file
    from engine.models.registry import load_model

    bundle = load_model("efficientnet_lite0")
    x = bundle.preprocessing.normalize(load_image_file(SAMPLES / "cat.jpg", bundle.preprocessing))
    return bundle.graph.forward(x, bundle.params, keep_caches=False).activations


@pytest.mark.parametrize("node", ["input", "stem.conv", "stem.relu6", "block1.depthwise.bn", "block2.expand.relu6",
                                  "block5.depthwise.relu6", "block12.expand.relu6", "head.relu6", "classifier"])
def test_efficientnet_nodes_have_pillows_pixels(node):
    activations = efficientnet_run()
    if node not in activations:  # a renamed node: any node of that kind will do
        node = next(n for n in activations if n.endswith(node.rsplit(".", 1)[-1]))
    for scale in ("channel", "layer"):
        assert_same_as_pillow(activations[node][0], scale)
