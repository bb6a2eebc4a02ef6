"""Torch port of the removal-mask builders in ops/regions.py: region masks and mask images.

`rasterize_regions` stays the numpy/Pillow one: it rasterises the job's JSON regions (params,
not model output), so `regions_mask` only moves its result to the device. `mask_from_image`
works on the mask image's tensor where it lies, resizing with ops.resize. (`dilate` is
in ops/regions.py.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .rasterize import Units, parse_regions, rasterize_regions
from .resize import resize

__all__ = ["Units", "mask_from_image", "parse_regions", "rasterize_regions", "regions_mask"]

# A pixel is removed when its luma (times alpha) reaches this, as in the numpy version.
_REMOVE_LUMA = 0.5


def regions_mask(
    regions: list[dict[str, Any]], units: Units, width: int, height: int, device: torch.device | str
) -> Tensor:
    """Boolean HxW tensor on `device` covering the regions (see ops.regions.rasterize_regions)."""
    return torch.from_numpy(rasterize_regions(regions, units, width, height)).to(device)


def _luma(image: Tensor) -> Tensor:
    """Mean of the first 3 channels, summed left to right in float32 as numpy's mean does."""
    if image.ndim == 2:
        return image
    channels = image[..., :3].unbind(-1)
    total = channels[0]
    for channel in channels[1:]:
        total = total + channel
    return total / len(channels)


def mask_from_image(image: Tensor, width: int, height: int, alpha: Tensor | None = None) -> Tensor:
    """Boolean mask from a mask image (white = remove), resized to width x height.

    HxW or HxWxC float tensor, on its device. The image counts as laid over black: a
    transparent pixel removes nothing, whatever its colour. Alpha is `alpha` (any size;
    LoadImage gives it as 1 - its MASK) or else the image's 4th channel.
    """
    image = image.to(torch.float32)
    luma = _luma(image)
    if alpha is None and image.ndim == 3 and image.shape[-1] == 4:
        alpha = image[..., 3]
    if alpha is not None:
        alpha = alpha.to(device=luma.device, dtype=torch.float32)
        if alpha.shape != luma.shape:
            size = (luma.shape[1], luma.shape[0])
            alpha = resize(alpha, size, "bilinear").clamp(0.0, 1.0)
        luma = luma * alpha
    if tuple(luma.shape) != (height, width):
        luma = resize(luma, (width, height), "nearest")
    return luma >= _REMOVE_LUMA
