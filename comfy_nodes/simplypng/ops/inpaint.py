"""Object removal in torch (numpy reference: tests/reference_ops/inpaint.py).

Inpaint crops around the masked regions, paste back exactly.

The pixels stay on the image's device: crops, the model call, resizing (ops.resize),
reflect padding and the paste-back are torch ops there. One step runs on the host: the crop
boxes are computed by `crop_boxes.py` on a CPU copy of the boolean mask. That mask comes
from the job's params (regions, a mask image), not from a model, and labelling a bool mask and
merging a few boxes is cheap; the boxes are host ints the crops need anyway.

Pixels outside the mask keep their exact input value (copied, never recomputed); inside it
they come from the model, through the same sizes and resampling as the numpy version.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .crop_boxes import (
    DEFAULT_CONTEXT,
    MAX_CROPS,
    MIN_CONTEXT_PX,
    MODEL_MULTIPLE,
    Box,
    model_size,
)
from .crop_boxes import crop_boxes as _crop_boxes_host
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
    "reflect_pad",
    "remove_objects",
]

# The model: (HxWx3 float image, HxW bool mask) -> HxWx3 float image, on the image's device.
InpaintFn = Callable[[Tensor, Tensor], Tensor]


def crop_boxes(mask: Tensor, context: float) -> list[Box]:
    """Crop boxes (x0, y0, x1, y1), as ops.inpaint.crop_boxes, from a CPU copy of the mask.

    The one host transfer of this module: an HxW bool mask from the job's params (see the
    module docstring), labelled by scipy exactly as the numpy version does.
    """
    return _crop_boxes_host(mask.detach().to(device="cpu", dtype=torch.bool).numpy(), context)


def _reflect_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Source index of each of size + pad positions under np.pad(mode="reflect") on one end.

    Reflection without repeating the edge, period 2 * (size - 1); numpy keeps reflecting when
    pad >= size (torch's "reflect" padding refuses that), and repeats a single pixel.
    """
    position = torch.arange(size + pad, device=device)
    if size == 1:
        return torch.zeros_like(position)
    period = 2 * (size - 1)
    phase = position % period
    return torch.where(phase < size, phase, period - phase)


def reflect_pad(image: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """HxWxC image padded at the bottom and right like np.pad(mode="reflect"), any sizes."""
    height, width = image.shape[:2]
    rows = _reflect_index(height, pad_h, image.device)
    cols = _reflect_index(width, pad_w, image.device)
    return image.index_select(0, rows).index_select(1, cols)


def _run_model(inpaint: InpaintFn, image: Tensor, mask: Tensor) -> Tensor:
    result = inpaint(image, mask)
    if tuple(result.shape) != tuple(image.shape):
        raise ValueError(
            f"inpainter returned shape {tuple(result.shape)}, expected {tuple(image.shape)}"
        )
    if result.device != image.device:
        raise ValueError(f"inpainter returned a tensor on {result.device}, not {image.device}")
    return result.to(torch.float32).clamp(0.0, 1.0)


def _inpaint_crop(crop: Tensor, crop_mask: Tensor, inpaint: InpaintFn, resolution: int) -> Tensor:
    """The model's fill for one crop (HxWx3), at the crop's own size."""
    height, width = crop_mask.shape
    if max(height, width) > resolution:
        size = model_size(width, height, resolution)
        small = resize(crop, size, "lanczos").clamp(0.0, 1.0)
        # Any coverage counts: a pixel partly over the object must be repainted.
        small_mask = resize(crop_mask.to(torch.float32), size, "bilinear") > 0
        filled = _run_model(inpaint, small, small_mask)
        return resize(filled, (width, height), "lanczos").clamp(0.0, 1.0)
    # Small enough: pad to multiples of 8 rather than resample, so nothing gets blurred.
    pad_h, pad_w = -height % MODEL_MULTIPLE, -width % MODEL_MULTIPLE
    padded = reflect_pad(crop, pad_h, pad_w)
    padded_mask = torch.nn.functional.pad(crop_mask, (0, pad_w, 0, pad_h))  # zeros: not masked
    return _run_model(inpaint, padded, padded_mask)[:height, :width]


def remove_objects(
    image: Tensor,
    mask: Tensor,
    inpaint: InpaintFn,
    resolution: int = 512,
    context: float = DEFAULT_CONTEXT,
) -> Tensor:
    """HxWxC float32 image with the masked pixels inpainted, on the image's device.

    Pixels outside `mask` (HxW, on the same device) are bit-identical to the input, and so is
    any channel past the third.
    """
    mask = mask.to(device=image.device, dtype=torch.bool)
    out = image.to(torch.float32).clone()
    boxes = crop_boxes(mask, context)  # empty for an empty mask: the model is not called
    for x0, y0, x1, y1 in boxes:
        crop_mask = mask[y0:y1, x0:x1]
        region = out[y0:y1, x0:x1, :3]
        # The running result is cropped, so a later crop sees earlier fills as context.
        filled = _inpaint_crop(region, crop_mask, inpaint, resolution)  # the model gets a copy
        region.copy_(torch.where(crop_mask[..., None], filled, region))
    return out
