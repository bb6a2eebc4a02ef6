"""Torch port of tests/reference_ops/shadow.py (numpy): drop, hard and contact shadows under a straight-alpha subject.

Same modes and results as the numpy version (see its docstring). scipy's pieces are reproduced
exactly: gaussian_filter(mode="constant", truncate=4.0) is the same normalised kernel applied as
a banded matrix along rows then columns, and the contact shadow's order-1 affine_transform is the
same two-row linear interpolation, with scipy's rule that a sample outside [0, height - 1] is 0.
Only the rows the squashed silhouette can reach (plus the blur radius) are computed; every other
row of the result is exactly 0, as in the numpy version.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from .alpha import alpha_bbox
from .resize import BLOCK_ROWS, Band, Block, apply_cols, apply_rows

ShadowMode = Literal["none", "soft", "hard", "drop"]

# Height of the contact shadow relative to the subject's height.
CONTACT_SQUASH = 0.12

# scipy.ndimage.gaussian_filter's default: the kernel reaches truncate * sigma.
_TRUNCATE = 4.0


def shift(plane: Tensor, dx: int, dy: int) -> Tensor:
    """Translate an HxW plane by whole pixels, filling with zeros."""
    height, width = plane.shape
    out = torch.zeros_like(plane)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src = plane[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def _radius(blur: float) -> int:
    """scipy's kernel radius for sigma = blur / 2: int(truncate * sigma + 0.5)."""
    return int(_TRUNCATE * (blur / 2.0) + 0.5) if blur > 0 else 0


@lru_cache(maxsize=32)
def _gaussian_band(size: int, blur: float, device: torch.device) -> Band:
    """scipy's correlate1d with its float64 Gaussian kernel, zero outside the plane, as a Band.

    A convolution is the same tile for every block of rows, slid along the diagonal: one tile is
    built and every block takes a view of it, cut where the plane's border drops taps.
    """
    sigma = blur / 2.0
    radius = _radius(blur)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / (sigma * sigma) * offsets**2)
    kernel = kernel / kernel.sum()
    rows, taps = BLOCK_ROWS, kernel.numel()
    tile = torch.zeros((rows, rows + taps - 1), dtype=torch.float64)
    for r in range(rows):  # one row per block row, not per pixel
        tile[r, r : r + taps] = kernel
    shared = tile.to(device=device, dtype=torch.float32)
    blocks = []
    for out0 in range(0, size, rows):
        out1 = min(size, out0 + rows)
        reach0 = out0 - radius  # input row under the tile's first column
        in0, in1 = max(0, reach0), min(size, out1 + radius)
        view = shared[: out1 - out0, in0 - reach0 : in1 - reach0]
        blocks.append(Block(out0, out1, in0, in1, view))
    return Band(size, size, tuple(blocks))


def _blur(plane: Tensor, blur: float) -> Tensor:
    """gaussian_filter(plane, blur / 2, mode="constant"): along rows first, then columns.

    scipy's order, so the float32 intermediate is the same.
    """
    if blur <= 0:
        return plane
    height, width = plane.shape
    down = apply_rows(_gaussian_band(height, float(blur), plane.device), plane)
    return apply_cols(_gaussian_band(width, float(blur), plane.device), down)


def drop_shadow(alpha: Tensor, dx: int, dy: int, blur: float) -> Tensor:
    """Shadow coverage (0..1) of the silhouette offset by (dx, dy) and blurred."""
    # shift always returns a new plane, and so does a blur: clip in place.
    return _blur(shift(alpha.to(torch.float32), dx, dy), blur).clamp_(0.0, 1.0)


def _squash_rows(
    height: int, centre: float, base: float, squash: float
) -> tuple[int, Tensor, Tensor, Tensor] | None:
    """Rows of scipy's affine_transform(order=1, mode="constant") that can be non-zero.

    Output row y samples input row c = y * (1 / squash) + (centre - base / squash), computed in
    the same double operations as scipy. scipy gives cval (0) when c < 0 or c > height - 1 and
    interpolates linearly otherwise. c grows with y, so the sampled rows form one run: returns
    its first row, and per row the two source rows and the weight of the second; None if empty.
    Host arithmetic on row numbers only, no pixel data.
    """
    scale = 1.0 / squash
    offset = centre - base / squash
    coord = torch.arange(height, dtype=torch.float64) * scale + offset
    inside = torch.nonzero((coord >= 0.0) & (coord <= height - 1)).flatten()
    if inside.numel() == 0:
        return None
    first, last = int(inside[0]), int(inside[-1])
    coord = coord[first : last + 1]
    low = torch.floor(coord)
    weight = coord - low
    low_row = low.to(torch.int64)
    high_row = (low_row + 1).clamp_max(height - 1)  # at c == height - 1 its weight is 0
    return first, low_row, high_row, weight


def contact_shadow_strip(
    alpha: Tensor,
    dx: int,
    dy: int,
    blur: float,
    squash: float = CONTACT_SQUASH,
    *,
    canvas: tuple[int, int] | None = None,
    at: tuple[int, int] = (0, 0),
) -> tuple[int, Tensor] | None:
    """The contact shadow's non-zero rows: (first row, coverage of those rows), or None.

    The shadow is that of a canvas of size `canvas` (height, width; default alpha's own), zero
    except for `alpha` with its top-left corner at `at` (x, y), so a caller placing a subject
    need not build that canvas. The coverage is 0 outside the returned rows, exactly as in the
    numpy version: the squashed silhouette fills a few rows, the shift moves them and the blur
    spreads them by its radius.
    """
    plane_h, plane_w = alpha.shape
    height, width = canvas if canvas is not None else (plane_h, plane_w)
    left, top_at = at
    box = alpha_bbox(alpha, 0.5)  # host sync: the box sets which rows are sampled
    if box is None or abs(dx) >= width or abs(dy) >= height:
        return None
    top, bottom = box[1] + top_at, box[3] + top_at
    rows = _squash_rows(height, (top + bottom - 1) / 2.0, float(bottom - 1), squash)
    if rows is None:
        return None
    first, low_row, high_row, weight = rows
    flat = _sample_rows(alpha, low_row - top_at, high_row - top_at, weight)
    # Rows the shifted, blurred strip can reach, clipped to the canvas.
    radius = _radius(blur)
    strip0, strip1 = first + dy, first + dy + flat.shape[0]
    lo, hi = max(0, strip0 - radius), min(height, strip1 + radius)
    if lo >= hi:
        return None
    window = torch.zeros((hi - lo, width), dtype=torch.float32, device=alpha.device)
    row0, row1 = max(strip0, 0), min(strip1, height)
    x0 = left + dx  # canvas column of the plane's first column, once shifted
    col0, col1 = max(0, -x0), min(plane_w, width - x0)
    if row0 < row1 and col0 < col1:
        window[row0 - lo : row1 - lo, x0 + col0 : x0 + col1] = flat[
            row0 - strip0 : row1 - strip0, col0:col1
        ]
    return lo, _blur(window, blur).clamp_(0.0, 1.0)


def _sample_rows(plane: Tensor, low: Tensor, high: Tensor, weight: Tensor) -> Tensor:
    """(1 - weight) * plane[low] + weight * plane[high], rows outside the plane being zero."""
    height = plane.shape[0]
    device = plane.device
    w_high = weight.to(torch.float64)
    w_low = (1.0 - w_high) * ((low >= 0) & (low < height))
    w_high = w_high * ((high >= 0) & (high < height))
    low_rows = plane.index_select(0, low.clamp(0, height - 1).to(device)).to(torch.float32)
    high_rows = plane.index_select(0, high.clamp(0, height - 1).to(device)).to(torch.float32)
    low_rows *= w_low.to(device, torch.float32)[:, None]
    return low_rows.addcmul_(high_rows, w_high.to(device, torch.float32)[:, None])


def contact_shadow(
    alpha: Tensor, dx: int, dy: int, blur: float, squash: float = CONTACT_SQUASH
) -> Tensor:
    """Shadow coverage of the silhouette flattened to `squash` of its height on its base line."""
    out = torch.zeros(alpha.shape, dtype=torch.float32, device=alpha.device)
    strip = contact_shadow_strip(alpha, dx, dy, blur, squash)
    if strip is not None:
        first, coverage = strip
        out[first : first + coverage.shape[0]] = coverage
    return out


def shadow_coverage(
    alpha: Tensor, mode: ShadowMode, dx: int, dy: int, blur: float
) -> Tensor | None:
    """Shadow coverage for a mode, or None for "none"."""
    if mode == "none":
        return None
    if mode == "hard":
        return drop_shadow(alpha, dx, dy, 0.0)
    if mode == "drop":
        return drop_shadow(alpha, dx, dy, blur)
    if mode == "soft":
        return contact_shadow(alpha, dx, dy, blur)
    raise ValueError(f"unknown shadow mode {mode!r}")


def to_8bit_grid_(values: Tensor) -> Tensor:
    """`alpha.to_8bit_grid` in place, the same float32 steps, for a tensor we own.

    On CPU each image-sized temporary costs more (first-touch page faults) than the
    arithmetic done on it.
    """
    return values.clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)


def add_shadow(
    rgba: Tensor, mode: ShadowMode, dx: int, dy: int, opacity: float, blur: float
) -> Tensor:
    """RGBA subject with a black shadow of the given mode composited under it.

    The composite is `alpha.over(subject, shadow)` written out for a black bottom into one
    output buffer: over's premultiplied colour is top_rgb * ta + 0 * ba * (1 - ta), exactly
    top_rgb * ta, so the same float32 operations give the same values with far fewer
    image-sized temporaries.
    """
    coverage = shadow_coverage(rgba[..., 3], mode, dx, dy, blur)
    if coverage is None or opacity <= 0:
        return rgba.to(torch.float32, copy=True)
    shadow_alpha = coverage.mul_(opacity)  # coverage is a new tensor
    top = rgba.to(torch.float32)
    top_alpha = top[..., 3]
    out = torch.empty_like(top)
    out_alpha = out[..., 3]
    torch.sub(1.0, top_alpha, out=out_alpha)
    out_alpha.mul_(shadow_alpha).add_(top_alpha)  # ta + ba * (1 - ta)
    rgb = out[..., :3]
    torch.mul(top[..., :3], top_alpha[..., None], out=rgb)
    # Where nothing covers a pixel its premultiplied colour is 0, and 0 / 1 is over's 0.
    rgb.div_(torch.where(out_alpha > 0, out_alpha, 1.0)[..., None]).clamp_(0.0, 1.0)
    return to_8bit_grid_(out)
