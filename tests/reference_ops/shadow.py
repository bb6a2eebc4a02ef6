"""Shadows composited under a straight-alpha RGBA subject on a transparent canvas.

Modes:
- "drop": the silhouette offset by (dx, dy) and blurred (CSS drop-shadow semantics: the blur
  radius is twice the Gaussian sigma).
- "hard": the offset silhouette with a crisp edge (no blur).
- "soft": a contact (ground) shadow: the silhouette flattened vertically onto the subject's base
  line, offset and blurred, as in product photos standing on a surface.
The shadow is black, scaled by opacity and combined with the subject by "over", so the subject's
own pixels are unchanged where it is opaque. The canvas keeps its size; shadow past the border is
clipped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage
from simplypng.ops.shadow import CONTACT_SQUASH

from .alpha import alpha_bbox, over, to_8bit_grid

ShadowMode = Literal["none", "soft", "hard", "drop"]


def shift(plane: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate an HxW plane by whole pixels, filling with zeros."""
    height, width = plane.shape
    out = np.zeros_like(plane)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src = plane[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def _blur(plane: np.ndarray, blur: float) -> np.ndarray:
    if blur <= 0:
        return plane
    return ndimage.gaussian_filter(plane, sigma=blur / 2.0, mode="constant")


def drop_shadow(alpha: np.ndarray, dx: int, dy: int, blur: float) -> np.ndarray:
    """Shadow coverage (0..1) of the silhouette offset by (dx, dy) and blurred."""
    return np.clip(_blur(shift(alpha.astype(np.float32), dx, dy), blur), 0.0, 1.0)


def contact_shadow(
    alpha: np.ndarray, dx: int, dy: int, blur: float, squash: float = CONTACT_SQUASH
) -> np.ndarray:
    """Shadow coverage of the silhouette flattened to `squash` of its height on its base line."""
    box = alpha_bbox(alpha, 0.5)
    if box is None:
        return np.zeros_like(alpha, dtype=np.float32)
    _, top, _, bottom = box
    centre = (top + bottom - 1) / 2.0
    base = bottom - 1
    # output row y samples input row centre + (y - base) / squash: the subject's middle lands
    # on the base line and its height shrinks to squash * height.
    flat = ndimage.affine_transform(
        alpha.astype(np.float32),
        matrix=np.diag([1.0 / squash, 1.0]),
        offset=(centre - base / squash, 0.0),
        order=1,
        mode="constant",
        cval=0.0,
    )
    return np.clip(_blur(shift(flat, dx, dy), blur), 0.0, 1.0)


def shadow_coverage(
    alpha: np.ndarray, mode: ShadowMode, dx: int, dy: int, blur: float
) -> np.ndarray | None:
    """Shadow coverage for a mode, or None for "none"."""
    if mode == "none":
        return None
    if mode == "hard":
        return drop_shadow(alpha, dx, dy, 0.0)
    if mode == "drop":
        return drop_shadow(alpha, dx, dy, blur)
    if mode == "soft":
        return contact_shadow(alpha, dx, dy, blur)
    raise ValueError(f"unknown shadow mode {mode!r}")


def add_shadow(
    rgba: np.ndarray, mode: ShadowMode, dx: int, dy: int, opacity: float, blur: float
) -> np.ndarray:
    """RGBA subject with a black shadow of the given mode composited under it."""
    coverage = shadow_coverage(rgba[..., 3], mode, dx, dy, blur)
    if coverage is None or opacity <= 0:
        return rgba.astype(np.float32, copy=True)
    shadow_alpha = coverage * np.float32(opacity)
    black = np.zeros_like(rgba[..., :3])
    rgb, alpha = over(rgba[..., :3], rgba[..., 3], black, shadow_alpha)
    return to_8bit_grid(np.concatenate([rgb, alpha[..., None]], axis=-1))
