"""Torch port of tests/reference_ops/colour_key.py (numpy): one colour made transparent, with a tolerance and a ramp."""

from __future__ import annotations

import re

import torch
from torch import Tensor

from .errors import InvalidColourError
from .shadow import to_8bit_grid_

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_hex(colour: str, device: torch.device | str | None = None) -> Tensor:
    """#rrggbb -> float32 [r, g, b] in 0..255, on `device`."""
    match = _HEX.match(colour.strip())
    if not match:
        raise InvalidColourError(f"SimplyPNG: {colour!r} is not a #rrggbb colour")
    value = match.group(1)
    channels = [float(int(value[i : i + 2], 16)) for i in (0, 2, 4)]
    return torch.tensor(channels, dtype=torch.float32, device=device)


def key_alpha(image: Tensor, key: Tensor, tolerance: float, softness: float) -> Tensor:
    """Alpha from the Euclidean RGB distance d (0..255 units) to `key`.

    d <= tolerance: 0 (keyed out); d >= tolerance + softness: 1; linear in between.
    """
    squared = image[..., :3].to(torch.float32) * 255.0
    squared.sub_(key.to(image.device, torch.float32)).mul_(squared)
    # numpy's float32 steps exactly, so a hard threshold flips on the same pixels: the sum in
    # its order, (r + g) + b, and a correctly rounded square root (torch's float32 CPU sqrt is
    # not; the float64 root rounded to float32 is).
    total = torch.add(squared[..., 0], squared[..., 1]).add_(squared[..., 2])
    distance = total.to(torch.float64).sqrt_().to(torch.float32)
    if softness <= 0:
        return (distance > tolerance).to(torch.float32)
    return distance.sub_(tolerance).div_(softness).clamp_(0.0, 1.0)


def colour_key(image: Tensor, colour: str, tolerance: float, softness: float) -> Tensor:
    """Straight-alpha RGBA with `colour` keyed out; colours are kept, hidden ones zeroed."""
    rgb = image[..., :3].to(torch.float32)
    out = torch.empty((*rgb.shape[:-1], 4), dtype=torch.float32, device=rgb.device)
    alpha = key_alpha(rgb, parse_hex(colour, rgb.device), tolerance, softness)
    out[..., 3] = to_8bit_grid_(alpha)  # in place: key_alpha's result is ours
    out[..., :3] = rgb
    out[..., :3].masked_fill_(out[..., 3:] <= 0, 0.0)
    return out
