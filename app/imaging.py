"""Uploaded images -> the pixels a model sees: decode safely, make RGB, resize the shorter side, centre-crop.

Untrusted bytes are bounded three times before any pixel is decoded: by their length, by the
width × height the file header announces (a 50 KB PNG can declare 100,000 × 100,000 pixels, a
"decompression bomb"), and by the memory decoding will take, estimated from the header
(:func:`decode_cost`: width × height × bands × bytes per sample, and the copies made on the way to
RGB) and checked against a :class:`DecodeGate` (a per-image limit, and a machine-wide budget). Only
PNG, JPEG, WebP, BMP and GIF are read; a GIF or animated WebP gives its first frame. Transparent
pixels are laid on white, and phone photos are turned upright (EXIF).

    prepare_image(data, preprocessing) -> (crop, crop, 3) uint8

then ``preprocessing.normalize(pixels)`` gives the model's ``(1, C, crop, crop)`` float32 input.
"""

from __future__ import annotations

import io
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from engine.models.bundle import Preprocessing

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
#: resized images larger than this many crops are resampled within the crop only (bounded time and memory)
MAX_RESIZE_FACTOR = 16
#: bicubic, as TensorFlow's EfficientNet evaluation; Pillow antialiases when it shrinks
RESAMPLE = Image.Resampling.BICUBIC


class ImageError(ValueError):
    """An image that cannot be used; ``status_code`` is the HTTP status the API should answer with."""

    status_code = 422


class ImageTooLargeError(ImageError):
    """Too many bytes, or too many pixels once decoded (a decompression bomb)."""

    status_code = 413


class DecodeGate(Protocol):
    """What bounds decoding's memory: ``limit_bytes`` for one image (more: 413), and ``with gate(nbytes):``
    holding ``nbytes`` of a shared budget while the image is decoded (waiting for it, or refusing)."""

    limit_bytes: int

    def __call__(self, nbytes: int) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class DecodeCost:
    """The memory decoding one image takes, estimated from its header."""

    width: int
    height: int
    mode: str
    decoded_bytes: int  # the decoded pixels: width × height × bands × bytes per sample (as Pillow stores them)
    peak_bytes: int  # the decoded pixels and the copies alive at once on the way to the RGB picture

    def describe(self) -> str:
        return (f"{self.width} × {self.height} pixels of mode {self.mode} take about "
                f"{self.peak_bytes / 2**20:,.0f} MiB while decoded")


class UnsupportedImageError(ImageError):
    """Not an image in one of the formats read here."""

    status_code = 415


def open_image(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` (PNG, JPEG, WebP, BMP or GIF; first frame) to an upright RGB image, within the bounds."""
    image = _open_checked(data, max_bytes, max_pixels)
    return _to_rgb(image, data_len=len(data))


def prepare_image(
    data: bytes,
    preprocessing: Preprocessing,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    gate: DecodeGate | None = None,
) -> np.ndarray:
    """Decode, make RGB, scale the shorter side to ``preprocessing.resize``, keep the centre square.

    With a ``gate``, an image whose decoding would take more than ``gate.limit_bytes`` is refused (413) before
    any pixel is decoded, and the decoding holds its estimated bytes of the gate's budget while it runs.
    Returns ``(crop, crop, 3) uint8``.
    """
    image = _open_checked(data, max_bytes, max_pixels)
    if image.format == "JPEG":
        # decode at a reduced scale straight away (1/2, 1/4, 1/8) while both sides stay >= resize
        image.draft("RGB", (preprocessing.resize, preprocessing.resize))
    if gate is None:
        return resize_and_crop(_to_rgb(image, data_len=len(data)), preprocessing)
    cost = decode_cost(image)
    check_decode_cost(cost, gate.limit_bytes)
    with gate(cost.peak_bytes):
        return resize_and_crop(_to_rgb(image, data_len=len(data)), preprocessing)


#: modes whose pixels are composited on white (transparency)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
#: 16-bit greyscale (PNG): the top 8 bits are kept
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")


def stored_bytes_per_pixel(mode: str) -> int:
    """Bytes one pixel of ``mode`` takes decoded: bands × bytes per sample, as Pillow stores it (its 8-bit
    images of 2 or 3 bands are padded to 4 bytes a pixel; ``1`` takes a byte)."""
    image_mode = ImageMode.getmode(mode)
    bands, sample = len(image_mode.bands), int(image_mode.typestr[-1])
    if sample == 1 and bands in (2, 3):
        bands = 4
    return bands * sample


def decode_cost(image: Image.Image) -> DecodeCost:
    """The memory decoding ``image`` (opened, not yet loaded) to an RGB picture will take, from its header alone.

    The decoded pixels (width × height × bands × bytes per sample), plus what is alive beside them on the way to
    RGB: the RGB copy (4 bytes a pixel, unless already RGB), alpha compositing's layers on white, EXIF
    rotation's rotated copy; and a tenth more for the decoder's buffers. Measured peaks (4000 × 4000 PNGs):
    L 82 MiB, RGB 66, RGBA 184, LA 245, I;16 93 MiB. The resize and crop that follow are bounded separately
    (``MAX_RESIZE_FACTOR``), and the float32 input the model sees is the crop's size only.
    """
    width, height = image.size
    pixels = width * height
    mode = image.mode
    decoded = pixels * stored_bytes_per_pixel(mode)
    peak = decoded
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        # the RGBA copy (unless RGBA already), the white background, the composite, then its RGB conversion
        peak += pixels * (4 * 2 + (0 if mode == "RGBA" else 4))
    elif mode != "RGB":
        peak += pixels * 4  # the RGB copy (16-bit: its uint16 copy replaces the decoded image, then 8-bit ones)
    if _rotated(image):
        peak += max(decoded, pixels * 4)  # exif_transpose's rotated copy
    peak += peak // 10  # the decoder's buffers and the resize's intermediate rows
    return DecodeCost(width, height, mode, decoded, peak)


def check_decode_cost(cost: DecodeCost, limit_bytes: int) -> None:
    """A 413 (ImageTooLargeError) naming the estimate and the limit when decoding would take more than the limit."""
    if cost.peak_bytes > limit_bytes:
        hint = " (or save it with 8 bits per channel)" if cost.mode in SIXTEEN_BIT_MODES else ""
        raise ImageTooLargeError(f"the image is too large to decode here: {cost.describe()}; the limit is "
                                 f"{limit_bytes / 2**20:,.0f} MiB per image: scale it down before uploading{hint}")


def resize_and_crop(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """``image``, shorter side scaled to ``resize``, centre ``crop`` × ``crop`` kept: (crop, crop, 3) uint8."""
    resize, crop = preprocessing.resize, preprocessing.crop
    if crop > resize:
        raise ValueError(f"preprocessing crops {crop} pixels out of a shorter side of only {resize}")
    if image.mode != "RGB":  # convert() to the same mode would copy every pixel
        image = image.convert("RGB")
    width, height = image.size
    scale = resize / min(width, height)
    # round, but never below the crop: a 1000 × 223 image must still give 224 rows
    new_size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
    left = round((new_size[0] - crop) / 2.0)
    top = round((new_size[1] - crop) / 2.0)
    if new_size[0] * new_size[1] > MAX_RESIZE_FACTOR * crop * crop:
        # a very long, thin image (a 1 × 60,000 PNG is 199 bytes) would be resized to billions of pixels
        # before the crop: resample only the part that is kept (Pillow's box; within one grey level)
        sx, sy = width / new_size[0], height / new_size[1]
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        return np.ascontiguousarray(np.asarray(image.resize((crop, crop), RESAMPLE, box=box), dtype=np.uint8))
    if new_size != image.size:
        image = image.resize(new_size, RESAMPLE)
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    return np.ascontiguousarray(pixels)


def load_image_file(path: str | Path, preprocessing: Preprocessing) -> np.ndarray:
    """A file on disk (e.g. a sample in ``static/samples/``) through :func:`prepare_image`."""
    path = Path(path)
    size = path.stat().st_size
    if size > DEFAULT_MAX_BYTES:
        raise ImageTooLargeError(f"{path.name} is {size} bytes; images up to {DEFAULT_MAX_BYTES} bytes are read")
    return prepare_image(path.read_bytes(), preprocessing)


# --- internals ---------------------------------------------------------------------------------------

def _rotated(image: Image.Image) -> bool:
    """Whether the EXIF orientation asks for a rotated or flipped copy (read from the header)."""
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block: _to_rgb reports it, or exif_transpose ignores it
        return False


def _open_checked(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise UnsupportedImageError("the upload is empty: send a PNG, JPEG, WebP, BMP or GIF image")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB: "
                            "send a smaller file (resize it or save it as JPEG)")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning, where made an error
        raise ImageTooLargeError(f"the image declares too many pixels to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError("this is not an image in a format read here: send a PNG, JPEG, WebP, BMP or "
                               "GIF file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # recognised, but its header is cut short or broken
        if "Decompressed data too large" in str(exc):  # a compressed text or colour-profile chunk bomb
            raise ImageTooLargeError("the image holds metadata (text or a colour profile) that decompresses to too "
                                     "much data: save the image again without metadata") from exc
        raise ImageError(f"the image file ({len(data)} bytes) is damaged or incomplete and cannot be read ({exc}): "
                         "try saving it again") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width} × {height} = {width * height:,} pixels; the limit is "
                            f"{max_pixels:,}: scale it down before uploading")
    if width < 1 or height < 1:
        raise ImageError(f"the image is {width} × {height} pixels: it has no pixels to show")
    return image


def _to_rgb(image: Image.Image, data_len: int) -> Image.Image:
    """Load the first frame, turn it upright, lay transparency on white, and make it RGB."""
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # upright; without a copy when it already is
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the image declares too many pixels to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the {image.format or 'image'} file ({data_len} bytes) is damaged or incomplete and "
                         f"cannot be decoded ({exc}): try saving it again") from exc
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = rgba = Image.alpha_composite(background, rgba)
        del background
    if image.mode in SIXTEEN_BIT_MODES:  # 16-bit greyscale PNG: keep the top 8 bits (in 16-bit arithmetic)
        sixteen = np.array(image, dtype=np.uint16)
        image.close()
        sixteen >>= 8
        image = Image.fromarray(sixteen.astype(np.uint8))
        del sixteen
    elif image.mode == "I":  # 32-bit greyscale: the bits a 16-bit image's top byte would be
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")
