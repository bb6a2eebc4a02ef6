"""Tight subject cutout: speck removal, crop to the alpha box with padding, canvas rules."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from simplypng.ops.cutout import SOLID_ALPHA, Canvas, PaddingUnit, cutout_canvas
from simplypng.ops.errors import NoSubjectError

from .alpha import alpha_bbox

__all__ = ["SOLID_ALPHA", "Canvas", "PaddingUnit", "cutout", "cutout_canvas", "extract"]
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_specks(alpha: np.ndarray, min_region: int) -> np.ndarray:
    """Drop disconnected parts whose solid area is below `min_region` px.

    Parts are the 8-connected components of the solid pixels; every other pixel (soft edges,
    haze) belongs to the nearest solid part and goes with it. The largest part is always kept so
    that a small subject never vanishes.
    """
    if min_region <= 0:
        return alpha.astype(np.float32, copy=True)
    solid = alpha >= SOLID_ALPHA
    labels, count = ndimage.label(solid, structure=_EIGHT_CONNECTED)
    if count == 0:
        return alpha.astype(np.float32, copy=True)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    keep = areas >= min_region
    keep[0] = False
    keep[int(np.argmax(areas[1:])) + 1] = True
    if keep[1:].all():
        return alpha.astype(np.float32, copy=True)
    _, (iy, ix) = ndimage.distance_transform_edt(~solid, return_indices=True)
    owner = labels[iy, ix]
    return np.where(keep[owner], alpha, 0.0).astype(np.float32)


def extract(rgba: np.ndarray, canvas: Canvas) -> np.ndarray:
    """The canvas region of an RGBA image; parts outside the image are transparent."""
    out = np.zeros((canvas.height, canvas.width, rgba.shape[2]), dtype=np.float32)
    height, width = rgba.shape[:2]
    sx0, sy0 = max(0, canvas.x0), max(0, canvas.y0)
    sx1 = min(width, canvas.x0 + canvas.width)
    sy1 = min(height, canvas.y0 + canvas.height)
    if sx0 < sx1 and sy0 < sy1:
        out[sy0 - canvas.y0 : sy1 - canvas.y0, sx0 - canvas.x0 : sx1 - canvas.x0] = rgba[
            sy0:sy1, sx0:sx1
        ]
    return out


def cutout(
    rgba: np.ndarray,
    padding: float,
    unit: PaddingUnit,
    square: bool,
    min_size: int,
    min_region: int,
) -> np.ndarray:
    """Subject cropped tight (after speck removal) onto a transparent canvas."""
    alpha = remove_specks(rgba[..., 3], min_region)
    box = alpha_bbox(alpha)
    if box is None:
        raise NoSubjectError("SimplyPNG: no subject found in the image")
    cleaned = rgba.astype(np.float32, copy=True)
    cleaned[..., 3] = alpha
    cleaned[alpha <= 0, :3] = 0.0
    return extract(cleaned, cutout_canvas(box, padding, unit, square, min_size))
