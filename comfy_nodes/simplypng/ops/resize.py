"""Torch port of tests/reference_ops/resize.py (numpy): Pillow's float ("F" mode) resampling, on the input's device.

Pillow (libImaging/Resample.c) resizes in two separable passes, horizontal then vertical, and
skips a pass whose size is unchanged. Each output pixel is a normalised weighted sum of a short
run of input pixels (`precompute_coeffs`), accumulated without 8-bit rounding for float images.
Here those weights form a banded out x in matrix, built once per (in, out, method, device) in
float64 on the host exactly as Pillow builds them, and applied on the device in float32 as one
matmul per block of output rows. NEAREST takes Pillow's affine nearest-neighbour path instead,
with its own rule for which input pixel an output pixel copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

from .alpha import fill_transparent, to_8bit_grid

Method = Literal["lanczos", "bicubic", "bilinear", "box", "nearest"]

# Output rows per matmul block. Each block multiplies only the input span its rows read
# (about rows * in/out + taps wide), so small blocks waste few multiplications on the band's
# zeros, while 16 rows still make a worthwhile matmul (measured: 8 to 24 are equally fast).
BLOCK_ROWS = 16


@dataclass(frozen=True)
class Block:
    """Output rows [out0, out1) read only input rows [in0, in1); weights is that dense tile."""

    out0: int
    out1: int
    in0: int
    in1: int
    weights: Tensor  # (out1 - out0, in1 - in0), float32 on the device


@dataclass(frozen=True)
class Band:
    """An out x in matrix that is zero outside a diagonal band, kept as dense row blocks.

    A dense matrix would do in/out times the work the taps need; blocks keep the work near the
    tap count while each block is still one plain matmul, written straight into its slice of
    the output (no gather, no transpose), on CPU and GPU alike.
    """

    in_size: int
    out_size: int
    blocks: tuple[Block, ...]


def make_band(
    index: Tensor,
    weights: Tensor,
    valid: Tensor,
    in_size: int,
    device: torch.device,
    channels: int = 1,
) -> Band:
    """Band whose row o sums weights[o, j] * input[index[o, j]] over the valid taps j.

    `index` (int64), `weights` (float64) and `valid` (bool) are (out, taps) host tensors; taps
    outside 0..in_size-1 are dropped, as a zero ("constant") border does. With `channels` > 1
    the band acts on interleaved channels (rows of `channels` values each), channel by channel:
    every tile is the Kronecker product with the identity, which lets an HxWxC image be
    resampled along W in place of a transpose to channel-first and back. Built with whole-array
    operations (sizes change with every image, so this runs often) and sent to the device once.
    """
    out_size, taps = index.shape
    rows = BLOCK_ROWS
    blocks = -(-out_size // rows)
    pad = blocks * rows - out_size  # rows without taps, cut off below
    valid = torch.cat([valid & (index >= 0) & (index < in_size), valid.new_zeros(pad, taps)])
    index = torch.cat([index, index.new_zeros(pad, taps)])
    first = torch.where(valid, index, in_size).view(blocks, -1).amin(dim=1)
    last = torch.where(valid, index, -1).view(blocks, -1).amax(dim=1)
    first = torch.where(last >= 0, first, 0)  # a block without taps reads nothing
    spans = (last - first + 1).clamp_min(0)
    width = max(1, int(spans.max()))
    column = (index - first.repeat_interleave(rows)[:, None]).clamp(0, width - 1)
    dense = torch.zeros((blocks * rows, width), dtype=torch.float64)
    # scatter_add: masked taps land on a clamped column with weight 0, harmlessly.
    taps_weights = torch.cat([weights, weights.new_zeros(pad, taps)])
    dense.scatter_add_(1, column, torch.where(valid, taps_weights, 0.0))
    tiles = dense.view(blocks, rows, width)
    if channels > 1:
        eye = torch.eye(channels, dtype=torch.float64)
        tiles = (tiles[:, :, None, :, None] * eye[None, None, :, None, :]).reshape(
            blocks, rows * channels, width * channels
        )
    tiles = tiles.to(device=device, dtype=torch.float32)
    block_list = []
    for b, (start, span) in enumerate(zip(first.tolist(), spans.tolist(), strict=True)):
        out0, out1 = b * rows, min(out_size, (b + 1) * rows)
        block_list.append(
            Block(
                out0 * channels,
                out1 * channels,
                start * channels,
                (start + span) * channels,
                tiles[b, : (out1 - out0) * channels, : span * channels],
            )
        )
    return Band(in_size * channels, out_size * channels, tuple(block_list))


def apply_rows(band: Band, x: Tensor, out: Tensor | None = None) -> Tensor:
    """band @ x for a 2-D x: (in, n) -> (out, n), along the rows; into `out` if given."""
    out = x.new_empty((band.out_size, x.shape[1])) if out is None else out
    for b in band.blocks:
        torch.matmul(b.weights, x[b.in0 : b.in1], out=out[b.out0 : b.out1])
    return out


def apply_cols(band: Band, x: Tensor) -> Tensor:
    """x @ band.T for a 2-D x: (m, in) -> (m, out), along the columns."""
    out = x.new_empty((x.shape[0], band.out_size))
    for b in band.blocks:
        torch.matmul(x[:, b.in0 : b.in1], b.weights.mT, out=out[:, b.out0 : b.out1])
    return out


def _box(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(torch.float64)


def _bilinear(x: Tensor) -> Tensor:
    return (1.0 - x.abs()).clamp_min(0.0)


def _bicubic(x: Tensor) -> Tensor:
    a = -0.5  # Pillow's bicubic_filter constant
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, 0.0))


def _sinc(x: Tensor) -> Tensor:
    # Pillow: x = x * M_PI; sin(x) / x, and exactly 1 at 0.
    xp = x * math.pi
    safe = torch.where(x == 0.0, 1.0, xp)
    return torch.where(x == 0.0, 1.0, torch.sin(safe) / safe)


def _lanczos(x: Tensor) -> Tensor:
    return torch.where((x >= -3.0) & (x < 3.0), _sinc(x) * _sinc(x / 3), 0.0)


# Pillow's filters and their supports (struct filter in Resample.c).
_FILTERS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


def pillow_coeffs(in_size: int, out_size: int, method: str) -> tuple[Tensor, Tensor, Tensor]:
    """Pillow's precompute_coeffs as (index, weights, valid) host tensors of shape (out, taps)."""
    kernel, base_support = _FILTERS[method]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    taps = math.ceil(support) * 2 + 1
    center = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    # (int) casts truncate toward zero; xmin only goes negative where it is clamped to 0 anyway.
    xmin = torch.trunc(center - support + 0.5).clamp_min(0.0)
    count = torch.trunc(center + support + 0.5).clamp_max(float(in_size)) - xmin
    index = xmin[:, None] + torch.arange(taps, dtype=torch.float64)
    valid = torch.arange(taps)[None, :] < count[:, None]
    weights = torch.where(valid, kernel((index - center[:, None] + 0.5) * (1.0 / filterscale)), 0.0)
    total = weights.sum(dim=1, keepdim=True)
    weights = torch.where(total != 0.0, weights / torch.where(total != 0.0, total, 1.0), weights)
    return index.to(torch.int64), weights, valid


@lru_cache(maxsize=32)
def _resample_band(
    in_size: int, out_size: int, method: str, device: torch.device, channels: int = 1
) -> Band:
    index, weights, valid = pillow_coeffs(in_size, out_size, method)
    return make_band(index, weights, valid, in_size, device, channels)


@lru_cache(maxsize=32)
def _nearest_index(in_size: int, out_size: int, device: torch.device) -> Tensor | None:
    """Pillow's ImagingScaleAffine source index for each output column (or row).

    Pillow walks the source position by repeated addition (xo += scale) from scale / 2 and
    truncates it; the same double additions here give the same indices. One step per output
    column or row (not per pixel), and cached. None if a source falls outside the input, which
    Pillow would leave at 0 and a plain resize never produces.
    """
    scale = in_size / out_size
    position = 0.0 + scale * 0.5
    index = []
    for _ in range(out_size):
        index.append(-1 if position < 0.0 else int(position))
        position += scale
    if not all(0 <= i < in_size for i in index):
        return None
    return torch.tensor(index, dtype=torch.int64, device=device)


def _nearest(x: Tensor, width: int, height: int) -> Tensor:
    rows = _nearest_index(x.shape[0], height, x.device)
    cols = _nearest_index(x.shape[1], width, x.device)
    if rows is None or cols is None:
        raise ValueError(f"nearest resize to {width}x{height} reads outside the input")
    return x.index_select(0, rows).index_select(1, cols)


def resize(
    array: Tensor, size: tuple[int, int], method: Method = "lanczos", *, consume: bool = False
) -> Tensor:
    """Resize an HxW or HxWxC float tensor to size=(width, height), on its device.

    Values are not clipped: Lanczos and bicubic overshoot, callers clip where it matters.
    With `consume`, a contiguous float32 `array` the caller no longer needs may be overwritten
    with the result, saving one image-sized allocation (and its first-touch cost on CPU).
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"resize target must be at least 1x1, got {width}x{height}")
    x = array.to(torch.float32)
    in_h, in_w = x.shape[:2]
    if (in_w, in_h) == (width, height):
        return x.clone()
    if method == "nearest":
        return _nearest(x, width, height)
    if method not in _FILTERS:
        raise ValueError(f"unknown resize method {method!r}")
    channels = 1 if x.ndim == 2 else x.shape[2]
    # As (H, W*C): the horizontal pass runs along the columns (interleaved channels, see
    # make_band) and the vertical one along the rows, both without reordering the data.
    # Pillow's order: horizontal first, then vertical.
    planes = x.reshape(in_h, in_w * channels)
    scratch = None
    if in_w != width:
        planes = apply_cols(_resample_band(in_w, width, method, x.device, channels), planes)
        # The vertical pass no longer reads the input, so the input's buffer can take the
        # result when it is ours (a float32 copy made above) or the caller gave it up.
        ours = consume or x.data_ptr() != array.data_ptr()
        if ours and x.is_contiguous() and height * width <= in_h * in_w:
            scratch = x.view(-1)[: height * width * channels].view(height, width * channels)
    if in_h != height:
        band = _resample_band(in_h, height, method, x.device)
        planes = apply_rows(band, planes, out=scratch)
    return planes.reshape((height, width) if x.ndim == 2 else (height, width, channels))


def long_edge_size(width: int, height: int, target: int) -> tuple[int, int]:
    """(width, height) scaled so the long edge is exactly `target`, aspect ratio kept."""
    if width >= height:
        return target, max(1, round(height * target / width))
    return max(1, round(width * target / height)), target


def needs_model(width: int, height: int, target: int) -> bool:
    """Whether an input must go through the upscaling model to reach `target` on its long edge."""
    return max(width, height) < target


def resize_long_edge(
    rgb: Tensor, alpha: Tensor | None, target: int
) -> tuple[Tensor, Tensor | None]:
    """Lanczos-resize colour and, separately, alpha so the long edge is exactly `target`.

    `alpha` may be at another resolution than `rgb` (the model upscaled only the colour); both
    land on the same exact size. Hidden colours are first replaced by their nearest visible
    neighbour so the resampler does not mix them into the subject's edge. Results are on the
    8-bit grid (see `to_8bit_grid`).
    """
    height, width = rgb.shape[:2]
    size = long_edge_size(width, height, target)
    if alpha is None:
        return to_8bit_grid(resize(rgb, size, "lanczos")), None
    same = tuple(alpha.shape) == (height, width)
    at_rgb = alpha if same else resize(alpha, (width, height), "bilinear")
    rgb = fill_transparent(rgb, at_rgb.clamp(0.0, 1.0))
    return to_8bit_grid(resize(rgb, size, "lanczos")), to_8bit_grid(resize(alpha, size, "lanczos"))
