"""Removal masks (numpy reference): mask images and dilation.

Region parsing and rasterisation are shared with the shipped pack (simplypng.ops.rasterize).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from simplypng.ops.rasterize import Units, parse_regions, rasterize_regions

from .resize import resize

__all__ = ["Units", "dilate", "mask_from_image", "parse_regions", "rasterize_regions"]


def mask_from_image(
    image: np.ndarray, width: int, height: int, alpha: np.ndarray | None = None
) -> np.ndarray:
    """Boolean mask from a mask image (white = remove), resized to width x height.

    The image counts as laid over black: a transparent pixel removes nothing, whatever its
    colour. Alpha is `alpha` (any size; LoadImage gives it as 1 - its MASK) or else the
    image's 4th channel.
    """
    luma = image[..., :3].mean(axis=-1) if image.ndim == 3 else image
    if alpha is None and image.ndim == 3 and image.shape[-1] == 4:
        alpha = image[..., 3]
    if alpha is not None:
        if alpha.shape != luma.shape:
            size = (luma.shape[1], luma.shape[0])
            alpha = np.clip(resize(alpha.astype(np.float32), size, "bilinear"), 0.0, 1.0)
        luma = luma * alpha
    if luma.shape != (height, width):
        luma = resize(luma.astype(np.float32), (width, height), "nearest")
    return luma >= 0.5


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by `pixels` (Euclidean distance)."""
    if pixels <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= pixels
