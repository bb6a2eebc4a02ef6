"""Alpha helpers shared by the matting, layout and resize operations."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from simplypng.ops.alpha import VISIBLE_ALPHA


def to_8bit_grid(array: np.ndarray) -> np.ndarray:
    """Round values to the nearest k/255.

    SaveImage writes int(255 * value), truncating: 0.99999 would become 254 and a white
    background off-white. On the grid, k/255 is written back as exactly k.
    """
    return (np.round(np.clip(array, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def snap_alpha(alpha: np.ndarray) -> np.ndarray:
    """Clip alpha to 0..1 and snap values that 8-bit output cannot tell from 0 or 1.

    Without the snap, 0.9999 would be written as 254 and a near-zero haze would count as subject.
    """
    out = np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=True)
    out[out < VISIBLE_ALPHA] = 0.0
    out[out > 1.0 - VISIBLE_ALPHA] = 1.0
    return out


def alpha_bbox(
    alpha: np.ndarray, threshold: float = VISIBLE_ALPHA
) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of pixels with alpha >= threshold."""
    visible = alpha >= threshold
    rows = np.flatnonzero(visible.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(visible.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def over(
    top_rgb: np.ndarray, top_alpha: np.ndarray, bottom_rgb: np.ndarray, bottom_alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Porter-Duff "over" on straight (non-premultiplied) colours; returns straight colours."""
    ta = top_alpha[..., None]
    ba = bottom_alpha[..., None]
    out_a = ta + ba * (1.0 - ta)
    premult = top_rgb * ta + bottom_rgb * ba * (1.0 - ta)
    safe = np.where(out_a > 0, out_a, 1.0)
    out_rgb = np.where(out_a > 0, premult / safe, 0.0)
    return np.clip(out_rgb, 0.0, 1.0).astype(np.float32), out_a[..., 0].astype(np.float32)


def fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give every invisible pixel the colour of the nearest visible one.

    Resamplers and upscaling models mix neighbouring colours, so whatever hides under alpha 0
    (black, or the removed background) would otherwise bleed into the subject's edge.
    """
    hidden = alpha < VISIBLE_ALPHA
    if not hidden.any() or hidden.all():
        return rgb.astype(np.float32, copy=True)
    _, (iy, ix) = ndimage.distance_transform_edt(hidden, return_indices=True)
    return rgb[iy, ix].astype(np.float32)
