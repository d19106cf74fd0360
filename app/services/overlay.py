"""Heat maps as PNGs: a colour scale, and a map blended over the picture the model saw."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from engine.models.bundle import Preprocessing

# (position, (r, g, b)) control points; linear in between
SEQUENTIAL = [(0.0, (0, 0, 4)), (0.25, (87, 16, 110)), (0.5, (188, 55, 84)), (0.75, (249, 142, 9)),
              (1.0, (252, 255, 164))]  # inferno-like: dark = no attribution, bright = most
DIVERGING = [(0.0, (33, 102, 172)), (0.5, (247, 247, 247)), (1.0, (178, 24, 43))]  # blue − / white 0 / red +


def colour_stops(signed: bool) -> list[tuple[float, tuple[int, int, int]]]:
    """The control points of ``colour``'s scale by map value: [0, 1], or [-1, 1] when ``signed`` (for a legend)."""
    if signed:
        return [(2 * position - 1, rgb) for position, rgb in DIVERGING]
    return list(SEQUENTIAL)


def colour(values: np.ndarray, signed: bool) -> np.ndarray:
    """``values`` in [0, 1] (or [-1, 1] when ``signed``) -> (H, W, 3) uint8."""
    stops = DIVERGING if signed else SEQUENTIAL
    t = (np.clip(values, -1, 1) + 1) / 2 if signed else np.clip(values, 0, 1)
    positions = np.array([p for p, _ in stops])
    rgb = np.stack([np.interp(t, positions, [c[i] for _, c in stops]) for i in range(3)], axis=-1)
    return (rgb + 0.5).astype(np.uint8)


def picture_of(x: np.ndarray, preprocessing: Preprocessing | None) -> np.ndarray:
    """A (H, W, 3) uint8 picture of an input tensor ``x: (C, H, W)``: undo the normalisation, else min-max."""
    channels = x.shape[0]
    if preprocessing is not None and len(preprocessing.mean) in (1, channels):
        mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(preprocessing.std, dtype=np.float32).reshape(-1, 1, 1)
        pixels = x * std + mean
        if preprocessing.invert:
            pixels = 1 - pixels
    else:
        low, high = float(x.min()), float(x.max())
        pixels = (x - low) / (high - low) if high > low else np.zeros_like(x)
    pixels = pixels[:3] if channels >= 3 else np.repeat(pixels[:1], 3, axis=0)
    return (np.clip(pixels.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


def blend(picture: np.ndarray, normalized_map: np.ndarray, signed: bool, opacity: float = 0.5) -> np.ndarray:
    """The coloured map over a greyed copy of the picture (both (H, W)), as (H, W, 3) uint8."""
    grey = picture.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    heat = colour(normalized_map, signed).astype(np.float32)
    strength = np.abs(normalized_map)[..., None] if signed else np.clip(normalized_map, 0, 1)[..., None]
    alpha = opacity * (0.35 + 0.65 * strength)  # weak attribution lets the picture show through
    return (grey * (1 - alpha) + heat * alpha + 0.5).astype(np.uint8)


def png_data_url(pixels: np.ndarray) -> str:
    """``(H, W)`` or ``(H, W, 3)`` uint8 -> ``data:image/png;base64,...`` (fast compression: small images)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
