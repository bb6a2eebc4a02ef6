"""Object removal: inpaint crops around the masked regions, then paste back exactly.

The model sees a crop (mask box plus context). A crop longer than the model's resolution (LaMa
was trained around 256-512 px) is shrunk to it, dims multiples of 8; a smaller one is only
reflect-padded to multiples of 8. Only pixels inside the mask are taken from the model output;
every other pixel keeps its exact input value (copied, never recomputed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from simplypng.ops.crop_boxes import (
    DEFAULT_CONTEXT,
    MAX_CROPS,
    MIN_CONTEXT_PX,
    MODEL_MULTIPLE,
    Box,
    crop_boxes,
    model_size,
)

from .resize import resize

__all__ = [
    "DEFAULT_CONTEXT",
    "MAX_CROPS",
    "MIN_CONTEXT_PX",
    "MODEL_MULTIPLE",
    "Box",
    "InpaintFn",
    "crop_boxes",
    "model_size",
    "remove_objects",
]

InpaintFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


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
