"""E-commerce layout: the subject scaled to fill a fraction of a pure white canvas."""

from __future__ import annotations

import numpy as np
from simplypng.ops.ecomm import (
    SHADOW_BLUR_OF_WIDTH,
    SHADOW_DROP_OF_HEIGHT,
    SHADOW_OPACITY,
    layout_box,
    shadow_window,
)
from simplypng.ops.errors import NoSubjectError

from .alpha import alpha_bbox, snap_alpha, to_8bit_grid
from .resize import resize
from .shadow import contact_shadow

# The layout and shadow-window arithmetic and the shadow's constants are the shipped op's.
__all__ = [
    "SHADOW_BLUR_OF_WIDTH",
    "SHADOW_DROP_OF_HEIGHT",
    "SHADOW_OPACITY",
    "layout_box",
    "white_background",
]


def _shadow_under(
    out: np.ndarray, alpha: np.ndarray, x: int, y: int, width: int, height: int
) -> None:
    """Darken `out` (the white canvas, in place) with a contact shadow of the placed subject."""
    blur, drop, (wx0, wy0, wx1, wy1) = shadow_window(x, y, width, height, *out.shape[:2])
    window = np.zeros((wy1 - wy0, wx1 - wx0), dtype=np.float32)
    window[y - wy0 : y - wy0 + height, x - wx0 : x - wx0 + width] = alpha
    coverage = contact_shadow(window, 0, drop, blur) * np.float32(SHADOW_OPACITY)
    out[wy0:wy1, wx0:wx1] *= (1.0 - coverage)[..., None]


def white_background(
    rgba: np.ndarray, fill: float, canvas_width: int, canvas_height: int, shadow: bool
) -> np.ndarray:
    """RGB canvas: pure white (exactly 1.0) wherever neither subject nor shadow covers it."""
    box = alpha_bbox(rgba[..., 3])
    if box is None:
        raise NoSubjectError("SimplyPNG: no subject found in the image")
    x, y, width, height = layout_box(box, fill, canvas_width, canvas_height)
    x0, y0, x1, y1 = box
    crop = rgba[y0:y1, x0:x1].astype(np.float32)
    # Resample premultiplied colour and alpha with one filter, so no hidden colour leaks in.
    alpha = snap_alpha(resize(crop[..., 3], (width, height), "lanczos"))
    premult = resize(crop[..., :3] * crop[..., 3:4], (width, height), "lanczos")
    premult = np.clip(premult, 0.0, alpha[..., None])

    out = np.ones((canvas_height, canvas_width, 3), dtype=np.float32)
    if shadow:
        _shadow_under(out, alpha, x, y, width, height)
    region = out[y : y + height, x : x + width]
    region[...] = premult + (1.0 - alpha[..., None]) * region
    return to_8bit_grid(out)
