"""Object removal: inpaint crops around the masked regions, then paste back exactly.

The model sees a crop (mask box plus context). A crop longer than the model's resolution (LaMa
was trained around 256-512 px) is shrunk to it, dims multiples of 8; a smaller one is only
reflect-padded to multiples of 8. Only pixels inside the mask are taken from the model output;
every other pixel keeps its exact input value (copied, never recomputed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from .resize import resize

InpaintFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
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


def _run_model(inpaint: InpaintFn, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    result = np.asarray(inpaint(image, mask.astype(np.float32)), dtype=np.float32)
    if result.shape != image.shape:
        raise ValueError(f"inpainter returned shape {result.shape}, expected {image.shape}")
    return np.clip(result, 0.0, 1.0)


def _inpaint_crop(
    crop: np.ndarray, crop_mask: np.ndarray, inpaint: InpaintFn, resolution: int
) -> np.ndarray:
    """The model's fill for one crop, at the crop's own size."""
    height, width = crop_mask.shape
    if max(height, width) > resolution:
        size = model_size(width, height, resolution)
        small = np.clip(resize(crop, size, "lanczos"), 0.0, 1.0)
        # Any coverage counts: a pixel partly over the object must be repainted.
        small_mask = resize(crop_mask.astype(np.float32), size, "bilinear") > 0
        filled = _run_model(inpaint, small, small_mask)
        return np.clip(resize(filled, (width, height), "lanczos"), 0.0, 1.0)
    # Small enough: pad to multiples of 8 rather than resample, so nothing gets blurred.
    pad_h, pad_w = -height % MODEL_MULTIPLE, -width % MODEL_MULTIPLE
    padded = np.pad(crop, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    padded_mask = np.pad(crop_mask, ((0, pad_h), (0, pad_w)))
    return _run_model(inpaint, padded, padded_mask)[:height, :width]


def remove_objects(
    image: np.ndarray,
    mask: np.ndarray,
    inpaint: InpaintFn,
    resolution: int = 512,
    context: float = DEFAULT_CONTEXT,
) -> np.ndarray:
    """Image with the masked pixels inpainted; pixels outside `mask` are bit-identical."""
    mask = mask.astype(bool)
    out = image.astype(np.float32, copy=True)
    if not mask.any():
        return out
    rgb = out[..., :3]
    for x0, y0, x1, y1 in crop_boxes(mask, context):
        crop_mask = mask[y0:y1, x0:x1]
        # The running result is cropped, so a later crop sees earlier fills as context.
        filled = _inpaint_crop(rgb[y0:y1, x0:x1], crop_mask, inpaint, resolution)
        region = rgb[y0:y1, x0:x1]
        region[crop_mask] = filled[crop_mask]
    return out
