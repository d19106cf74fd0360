"""Image decoding and preparation: every accepted format, safe bounds, exact crops, clear errors."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.imaging import (
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    load_image_file,
    open_image,
    prepare_image,
    resize_and_crop,
)
from engine.models.bundle import Preprocessing

IMAGENET = Preprocessing(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3)
SAMPLES = Path(__file__).resolve().parents[2] / "static" / "samples"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def coordinates_image(width: int, height: int) -> Image.Image:
    """Every pixel names its position: R = x mod 256, G = y mod 256, B = 16 * (x // 256) + y // 256."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x % 256, y % 256, 16 * (x // 256) + y // 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but carries almost no data (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- formats ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, lossless", [("PNG", True), ("BMP", True), ("GIF", True),
                                           ("JPEG", False), ("WEBP", False)])
def test_every_accepted_format_decodes_to_rgb(fmt, lossless):
    colours = np.zeros((40, 60, 3), np.uint8)
    colours[:, :30] = (200, 30, 30)
    colours[:, 30:] = (20, 40, 220)
    data = encode(Image.fromarray(colours), fmt)
    image = open_image(data)
    assert image.mode == "RGB" and image.size == (60, 40)
    pixels = np.asarray(image).astype(int)
    if lossless:
        np.testing.assert_array_equal(pixels, colours)
    else:
        assert np.abs(pixels[5:35, 5:25] - colours[5:35, 5:25]).max() < 40


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert tuple(np.asarray(open_image(data))[8, 8]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_laid_on_white(mode):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (0, 0, 0, 255)  # opaque black
    rgba[:, 4:] = (0, 0, 0, 0)    # fully transparent
    image = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.quantize(colors=2)
        image.info["transparency"] = int(np.asarray(image)[0, 7])
    pixels = np.asarray(open_image(encode(image, "PNG", **({"transparency": image.info["transparency"]}
                                                          if mode == "P" else {}))))
    assert (pixels[:, :4] == 0).all() and (pixels[:, 4:] == 255).all()


def test_greyscale_and_16_bit_pngs_become_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    pixels = np.asarray(open_image(encode(Image.fromarray(grey, "L"), "PNG")))
    assert pixels.shape == (8, 8, 3) and (pixels == grey[:, :, None]).all()
    deep = (grey.astype(np.uint16) << 8) | 0x7F
    sixteen = Image.fromarray(deep)
    assert sixteen.mode.startswith("I;16")
    pixels = np.asarray(open_image(encode(sixteen, "PNG")))
    assert pixels.shape == (8, 8, 3) and (pixels[:, :, 0] == grey).all()


def test_exif_orientation_is_applied():
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = open_image(encode(Image.fromarray(wide), "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (20, 40)  # now tall
    pixels = np.asarray(image).mean(axis=2)
    assert pixels[:15].mean() > 200 and pixels[25:].mean() < 50  # the white half is on top


# --- resize and crop -------------------------------------------------------------------------------

def test_centre_crop_without_resize_is_exact():
    image = coordinates_image(512, 256)  # shorter side already 256: no resampling
    pixels = resize_and_crop(image, IMAGENET)
    expected = np.asarray(image)[16:240, 144:368]
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, expected)


def test_shorter_side_is_scaled_then_the_centre_kept():
    # 100 x 50: black left half, white right half; shorter side 50 -> 64 makes it 128 wide,
    # the centre 64 columns are 32..96, so the black/white edge lands in the middle of the crop
    halves = np.zeros((50, 100, 3), np.uint8)
    halves[:, 50:] = 255
    pixels = resize_and_crop(Image.fromarray(halves), Preprocessing(64, 64, (0,), (1,))).mean(axis=2)
    assert pixels.shape == (64, 64)
    assert pixels[:, :30].max() < 10 and pixels[:, 34:].min() > 245


@pytest.mark.parametrize("size", [(1000, 223), (223, 1000), (7, 5), (2000, 2000)])
def test_any_aspect_ratio_gives_the_crop(size):
    pixels = resize_and_crop(Image.new("RGB", size, (10, 120, 250)), IMAGENET)
    assert pixels.shape == (224, 224, 3)
    assert (np.abs(pixels.astype(int) - (10, 120, 250)) <= 1).all()  # a flat colour stays flat


def test_prepare_image_decodes_large_jpegs_at_reduced_scale_without_changing_the_result():
    big = coordinates_image(2048, 1536).resize((2048, 1536))
    data = encode(big, "JPEG", quality=95)
    fast = prepare_image(data, IMAGENET)  # JPEG draft mode: decoded at 1/4 scale (512 x 384)
    exact = resize_and_crop(open_image(data), IMAGENET)
    assert fast.shape == exact.shape == (224, 224, 3)
    assert np.abs(fast.astype(int) - exact.astype(int)).mean() < 3


def test_sample_photo_becomes_a_model_input():
    pixels = load_image_file(SAMPLES / "cat.jpg", IMAGENET)
    x = IMAGENET.normalize(pixels)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert -1.0 <= x.min() < x.max() <= 1.0


# --- refusals --------------------------------------------------------------------------------------

def test_too_many_bytes_is_413():
    data = encode(Image.new("RGB", (64, 64)), "BMP")
    with pytest.raises(ImageTooLargeError, match="limit") as info:
        open_image(data, max_bytes=len(data) - 1)
    assert info.value.status_code == 413


def test_too_many_pixels_is_refused_before_decoding():
    data = encode(Image.new("RGB", (20, 20)), "PNG")
    with pytest.raises(ImageTooLargeError, match="20 × 20 = 400 pixels"):
        prepare_image(data, IMAGENET, max_pixels=399)
    # a header declaring 100,000 x 100,000 pixels behind 100 bytes: refused on the header alone
    # (decoding would fail differently: the data is not there)
    bomb = png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError):
        prepare_image(bomb, IMAGENET)
    with pytest.raises(ImageTooLargeError, match="8000 × 8000 = 64,000,000 pixels; the limit is 40,000,000"):
        prepare_image(png_header_only(8000, 8000), IMAGENET)
    with pytest.raises(ImageTooLargeError):  # between Pillow's warning (89 M) and error (179 M) limits
        prepare_image(png_header_only(11_000, 11_000), IMAGENET)


@pytest.mark.parametrize("data", [b"", b"hello, I am text pretending to be a .png",
                                  encode(Image.new("RGB", (8, 8)), "TIFF"), encode(Image.new("RGB", (8, 8)), "PPM")])
def test_other_files_are_415_naming_the_formats_read(data):
    with pytest.raises(UnsupportedImageError, match="PNG, JPEG, WebP, BMP") as info:
        open_image(data)
    assert info.value.status_code == 415


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_422_not_a_crash(fmt):
    data = encode(coordinates_image(300, 200), fmt)
    with pytest.raises(ImageError, match="damaged or incomplete") as info:
        open_image(data[: len(data) // 2])
    assert info.value.status_code == 422
    assert not isinstance(info.value, ImageTooLargeError | UnsupportedImageError)
