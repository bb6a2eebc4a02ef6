"""Torch port of tests/reference_ops/ecomm.py (numpy): the subject scaled to fill a fraction of a pure white canvas."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .alpha import alpha_bbox, snap_alpha
from .errors import NoSubjectError
from .resize import resize
from .shadow import CONTACT_SQUASH, contact_shadow_strip, to_8bit_grid_

# Contact shadow look, relative to the placed subject's size (same as the numpy version).
SHADOW_OPACITY = 0.35
SHADOW_BLUR_OF_WIDTH = 0.04
SHADOW_DROP_OF_HEIGHT = 0.01


def layout_box(
    box: tuple[int, int, int, int], fill: float, canvas_width: int, canvas_height: int
) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the scaled subject, centred, its longer relative side at `fill`.

    Pure Python, kept here rather than imported so this module needs no numpy.
    """
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    scale = fill * min(canvas_width / width, canvas_height / height)
    out_w = min(canvas_width, max(1, round(width * scale)))
    out_h = min(canvas_height, max(1, round(height * scale)))
    return (canvas_width - out_w) // 2, (canvas_height - out_h) // 2, out_w, out_h


def shadow_window(
    x: int, y: int, width: int, height: int, canvas_height: int, canvas_width: int
) -> tuple[float, int, tuple[int, int, int, int]]:
    """(blur, drop, window (x0, y0, x1, y1)) of the contact shadow of a subject placed at
    (x, y, width, height): the window holds the subject and everything its shadow reaches.

    Pure arithmetic, shared with the numpy reference.
    """
    blur = max(2.0, SHADOW_BLUR_OF_WIDTH * width)
    drop = max(1, round(SHADOW_DROP_OF_HEIGHT * height))
    margin = math.ceil(2.0 * blur) + drop + 1  # 4 sigma of the blur, plus the drop
    window = (
        max(0, x - margin),
        max(0, y - margin),
        min(canvas_width, x + width + margin),
        min(canvas_height, y + height + margin),
    )
    return blur, drop, window


def _shadow_under(
    out: Tensor, alpha: Tensor, x: int, y: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Darken `out` (the white canvas, in place) with a contact shadow of the placed subject.

    Returns the window (x0, y0, x1, y1) outside which the canvas is untouched.
    """
    blur, drop, (wx0, wy0, wx1, wy1) = shadow_window(x, y, width, height, *out.shape[:2])
    # The shadow of the window around the placed subject, without building that window. Only
    # the strip of rows it reaches is darkened: numpy multiplies the rest by exactly 1.0.
    strip = contact_shadow_strip(
        alpha,
        0,
        drop,
        blur,
        CONTACT_SQUASH,
        canvas=(wy1 - wy0, wx1 - wx0),
        at=(x - wx0, y - wy0),
    )
    if strip is not None:
        first, coverage = strip
        rows = out[wy0 + first : wy0 + first + coverage.shape[0], wx0:wx1]
        rows *= (1.0 - coverage * SHADOW_OPACITY)[..., None]
    return wx0, wy0, wx1, wy1


def white_background(
    rgba: Tensor, fill: float, canvas_width: int, canvas_height: int, shadow: bool
) -> Tensor:
    """RGB canvas: pure white (exactly 1.0) wherever neither subject nor shadow covers it."""
    box = alpha_bbox(rgba[..., 3])  # host sync: the box sets every size below
    if box is None:
        raise NoSubjectError("SimplyPNG: no subject found in the image")
    x, y, width, height = layout_box(box, fill, canvas_width, canvas_height)
    x0, y0, x1, y1 = box
    crop = rgba[y0:y1, x0:x1].to(torch.float32)
    # Resample premultiplied colour and alpha with one filter, so no hidden colour leaks in;
    # one call for all four channels (each is resampled on its own anyway).
    stacked = torch.empty((y1 - y0, x1 - x0, 4), dtype=torch.float32, device=rgba.device)
    torch.mul(crop[..., :3], crop[..., 3:], out=stacked[..., :3])
    stacked[..., 3] = crop[..., 3]
    scaled = resize(stacked, (width, height), "lanczos", consume=True)
    alpha = snap_alpha(scaled[..., 3])
    premult = scaled[..., :3].clamp_min_(0.0)
    torch.minimum(premult, alpha[..., None], out=premult)

    out = torch.ones((canvas_height, canvas_width, 3), dtype=torch.float32, device=rgba.device)
    touched = (x, y, x + width, y + height)
    if shadow:
        touched = _shadow_under(out, alpha, x, y, width, height)
    # premult + (1 - alpha) * region, in place; the same float32 operations.
    region = out[y : y + height, x : x + width]
    region.mul_((1.0 - alpha)[..., None]).add_(premult)
    # Outside the subject and its shadow window the canvas is exactly 1.0, already on the grid.
    tx0, ty0, tx1, ty1 = touched
    to_8bit_grid_(out[ty0:ty1, tx0:tx1])
    return out
