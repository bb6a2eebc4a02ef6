"""Torch port of `dilate` (tests/reference_ops/regions.py): grow a mask by a Euclidean radius.

Exact (equal to scipy.ndimage.distance_transform_edt(~mask) <= pixels), see distance.dilate.
Only the mask's bounding box grown by `pixels` can change, so the work is cropped to it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import distance


def dilate(mask: Tensor, pixels: int) -> Tensor:
    """Grow a boolean HxW mask by `pixels` (Euclidean distance), on the mask's device."""
    mask = mask.to(torch.bool)
    if pixels <= 0:
        return mask.clone()
    rows, cols = mask.any(dim=1), mask.any(dim=0)
    height, width = mask.shape
    # Bounding box of the mask (first/last True row and column): one sync for four scalars.
    ends = torch.stack(
        [
            rows.to(torch.uint8).argmax(),
            height - 1 - rows.flip(0).to(torch.uint8).argmax(),
            cols.to(torch.uint8).argmax(),
            width - 1 - cols.flip(0).to(torch.uint8).argmax(),
            rows.any().to(torch.int64),
        ]
    )
    top, bottom, left, right, found = (int(v) for v in ends.tolist())
    if not found:
        return mask.clone()
    y0, y1 = max(0, top - pixels), min(height, bottom + pixels + 1)
    x0, x1 = max(0, left - pixels), min(width, right + pixels + 1)
    out = torch.zeros_like(mask)
    out[y0:y1, x0:x1] = distance.dilate(mask[y0:y1, x0:x1], pixels)
    return out
