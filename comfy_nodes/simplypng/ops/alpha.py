"""Torch port of tests/reference_ops/alpha.py (numpy): alpha helpers on the device of their input tensors.

Same semantics as the numpy versions, in float32: the 8-bit grid rounding (round half to
even, like np.round), alpha snapping, the visible bounding box, Porter-Duff "over" on straight
colours, and the nearest-visible-colour fill, whose distance search is in `distance.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distance import nearest_strips

# Smallest alpha that survives 8-bit output (SaveImage truncates 255 * value).
VISIBLE_ALPHA = 1.0 / 255.0


def to_8bit_grid(array: Tensor) -> Tensor:
    """Round values to the nearest k/255 (SaveImage truncates 255 * value: 0.99999 -> 254)."""
    return (array.to(torch.float32).clamp(0.0, 1.0) * 255.0).round_().div_(255.0)


def snap_alpha(alpha: Tensor) -> Tensor:
    """Clip alpha to 0..1 and snap values that 8-bit output cannot tell from 0 or 1."""
    out = alpha.to(torch.float32).clamp(0.0, 1.0)
    out = torch.where(out < VISIBLE_ALPHA, 0.0, out)
    return torch.where(out > 1.0 - VISIBLE_ALPHA, 1.0, out)


def alpha_bbox(alpha: Tensor, threshold: float = VISIBLE_ALPHA) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of pixels with alpha >= threshold."""
    visible = alpha >= threshold
    rows, cols = visible.any(dim=1), visible.any(dim=0)
    height, width = visible.shape
    # First/last True of each profile by argmax on 0/1 (argmax returns the first maximum).
    ends = torch.stack(
        [
            cols.to(torch.uint8).argmax(),
            rows.to(torch.uint8).argmax(),
            width - cols.flip(0).to(torch.uint8).argmax(),
            height - rows.flip(0).to(torch.uint8).argmax(),
            rows.any().to(torch.int64),
        ]
    )
    # One host sync for five scalars, no pixel data.
    x0, y0, x1, y1, found = (int(v) for v in ends.tolist())
    return (x0, y0, x1, y1) if found else None


def over(
    top_rgb: Tensor, top_alpha: Tensor, bottom_rgb: Tensor, bottom_alpha: Tensor
) -> tuple[Tensor, Tensor]:
    """Porter-Duff "over" on straight (non-premultiplied) colours; returns straight colours."""
    ta = top_alpha[..., None]
    ba = bottom_alpha[..., None]
    out_a = ta + ba * (1.0 - ta)
    premult = top_rgb * ta + bottom_rgb * ba * (1.0 - ta)
    covered = out_a > 0
    out_rgb = torch.where(covered, premult / torch.where(covered, out_a, 1.0), 0.0)
    return out_rgb.clamp(0.0, 1.0).to(torch.float32), out_a[..., 0].to(torch.float32)


def fill_transparent(rgb: Tensor, alpha: Tensor) -> Tensor:
    """Give every invisible pixel the colour of a nearest visible one (exact Euclidean distance).

    Resamplers and upscaling models mix neighbouring colours, so whatever hides under alpha 0
    would otherwise bleed into the subject's edge. Visible pixels keep their colour bit-exactly;
    where several visible pixels are equally near, which one is used may differ from scipy's.
    """
    rgb = rgb.to(torch.float32)
    visible = alpha >= VISIBLE_ALPHA
    # Two scalar syncs decide the trivial cases (nothing hidden, nothing visible).
    if bool(visible.all()) or not bool(visible.any()):
        return rgb.clone()
    out = torch.empty_like(rgb)
    flat = rgb.reshape(-1, rgb.shape[-1])
    width = visible.shape[1]
    # Column strip by column strip: no whole-image index tensors.
    for c0, c1, rows, cols in nearest_strips(visible):
        picked = flat.index_select(0, (rows * width + cols).reshape(-1))
        out[:, c0:c1] = picked.view(rows.shape[0], c1 - c0, -1)
    return out
