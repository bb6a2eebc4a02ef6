"""Where object removal crops the image: boxes around the masked parts, with context.

Host-side geometry on a boolean mask that comes from the job's params (regions, a mask image),
not from a model: labelling it (scipy) and merging a few boxes is cheap, and the boxes are host
integers the crops need anyway. `inpaint.crop_boxes` calls this on a CPU copy of the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Context around the mask box, as a fraction of the box's long side, and at least this many px.
DEFAULT_CONTEXT = 0.5
MIN_CONTEXT_PX = 16
MODEL_MULTIPLE = 8
# More separate parts than this (a speckled mask) are inpainted as one crop: bounded work.
MAX_CROPS = 32

Box = tuple[int, int, int, int]


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def crop_boxes(mask: np.ndarray, context: float) -> list[Box]:
    """Crop boxes (x0, y0, x1, y1): one per group of masked parts whose context boxes overlap."""
    height, width = mask.shape
    labels, count = ndimage.label(mask)
    parts = ndimage.find_objects(labels)[:count]
    if count > MAX_CROPS:
        rows_any, cols_any = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        parts = [(slice(rows_any[0], rows_any[-1] + 1), slice(cols_any[0], cols_any[-1] + 1))]
    boxes: list[Box] = []
    for rows, cols in parts:
        side = max(rows.stop - rows.start, cols.stop - cols.start)
        margin = max(MIN_CONTEXT_PX, round(context * side))
        boxes.append(
            (
                max(0, cols.start - margin),
                max(0, rows.start - margin),
                min(width, cols.stop + margin),
                min(height, rows.stop + margin),
            )
        )
    merged = True
    while merged:  # merge until no two boxes overlap
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlap(boxes[i], boxes[j]):
                    boxes[i] = _union(boxes[i], boxes.pop(j))
                    merged = True
                    break
            if merged:
                break
    return boxes


def model_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Size a crop larger than `resolution` is shrunk to: long side ~resolution, multiples of 8."""
    scale = resolution / max(width, height)

    def snap(value: int) -> int:
        return max(MODEL_MULTIPLE, round(value * scale / MODEL_MULTIPLE) * MODEL_MULTIPLE)

    return snap(width), snap(height)
