"""Tight subject cutout: speck removal, crop to the alpha box with padding, canvas rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from .alpha import alpha_bbox
from .errors import NoSubjectError

PaddingUnit = Literal["px", "percent"]
# A pixel is "solid" subject at this alpha; specks are counted on solid pixels.
SOLID_ALPHA = 0.5
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


@dataclass(frozen=True)
class Canvas:
    """Where the output canvas lies in source coordinates: (x0, y0) and its size."""

    x0: int
    y0: int
    width: int
    height: int


def cutout_canvas(
    box: tuple[int, int, int, int],
    padding: float,
    unit: PaddingUnit,
    square: bool,
    min_size: int,
) -> Canvas:
    """Canvas for a subject box (x0, y0, x1, y1): padded, optionally square, at least min_size.

    Percent padding is a percentage of the subject's longer side, the same on all four sides.
    min_size grows the canvas (never scales the subject) so its long side is min_size, keeping
    its aspect ratio, with the content centred.
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    pad = round(padding) if unit == "px" else round(side * padding / 100.0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    width, height = x1 - x0, y1 - y0
    if square and width != height:
        size = max(width, height)
        x0 -= (size - width) // 2
        y0 -= (size - height) // 2
        width = height = size
    long_side = max(width, height)
    if min_size > long_side:
        scale = min_size / long_side
        new_w = min_size if width == long_side else max(width, round(width * scale))
        new_h = min_size if height == long_side else max(height, round(height * scale))
        x0 -= (new_w - width) // 2
        y0 -= (new_h - height) // 2
        width, height = new_w, new_h
    return Canvas(x0, y0, width, height)


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
