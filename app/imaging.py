"""Uploaded images -> the pixels a model sees: decode safely, make RGB, resize the shorter side, centre-crop.

Untrusted bytes are bounded twice before any pixel is decoded: by their length, and by the
width × height the file header announces (a 50 KB PNG can declare 100,000 × 100,000 pixels, a
"decompression bomb"). Only PNG, JPEG, WebP, BMP and GIF are read; a GIF or animated WebP gives its
first frame. Transparent pixels are laid on white, and phone photos are turned upright (EXIF).

    prepare_image(data, preprocessing) -> (crop, crop, 3) uint8

then ``preprocessing.normalize(pixels)`` gives the model's ``(1, C, crop, crop)`` float32 input.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
) -> np.ndarray:
    """Decode, make RGB, scale the shorter side to ``preprocessing.resize``, keep the centre square.

    Returns ``(crop, crop, 3) uint8``.
    """
    image = _open_checked(data, max_bytes, max_pixels)
    if image.format == "JPEG":
        # decode at a reduced scale straight away (1/2, 1/4, 1/8) while both sides stay >= resize
        image.draft("RGB", (preprocessing.resize, preprocessing.resize))
    return resize_and_crop(_to_rgb(image, data_len=len(data)), preprocessing)


def resize_and_crop(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """``image``, shorter side scaled to ``resize``, centre ``crop`` × ``crop`` kept: (crop, crop, 3) uint8."""
    resize, crop = preprocessing.resize, preprocessing.crop
    if crop > resize:
        raise ValueError(f"preprocessing crops {crop} pixels out of a shorter side of only {resize}")
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
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the image declares too many pixels to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the {image.format or 'image'} file ({data_len} bytes) is damaged or incomplete and "
                         f"cannot be decoded ({exc}): try saving it again") from exc
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale PNG: keep the top 8 bits
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
    return image.convert("RGB")
