"""Colour keying: make one colour transparent, with a tolerance and a soft ramp."""

from __future__ import annotations

import re

import numpy as np
from simplypng.ops.errors import InvalidColourError

from .alpha import to_8bit_grid

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_hex(colour: str) -> np.ndarray:
    """#rrggbb -> float32 [r, g, b] in 0..255."""
    match = _HEX.match(colour.strip())
    if not match:
        raise InvalidColourError(f"SimplyPNG: {colour!r} is not a #rrggbb colour")
    value = match.group(1)
    return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


def key_alpha(image: np.ndarray, key: np.ndarray, tolerance: float, softness: float) -> np.ndarray:
    """Alpha from the Euclidean RGB distance d (0..255 units) to `key`.

    d <= tolerance: 0 (keyed out); d >= tolerance + softness: 1; linear in between.
    """
    distance = np.linalg.norm(image[..., :3] * 255.0 - key, axis=-1)
    if softness <= 0:
        return (distance > tolerance).astype(np.float32)
    return np.clip((distance - tolerance) / softness, 0.0, 1.0).astype(np.float32)


def colour_key(image: np.ndarray, colour: str, tolerance: float, softness: float) -> np.ndarray:
    """Straight-alpha RGBA with `colour` keyed out; colours are kept, hidden ones zeroed."""
    rgb = image[..., :3].astype(np.float32, copy=True)
    alpha = to_8bit_grid(key_alpha(rgb, parse_hex(colour), tolerance, softness))
    rgb[alpha <= 0] = 0.0
    return np.concatenate([rgb, alpha[..., None]], axis=-1)
