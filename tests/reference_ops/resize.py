"""Float-precision resampling through Pillow's 32-bit float mode (no 8-bit rounding)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from simplypng.ops.resize import long_edge_size, needs_model

from .alpha import fill_transparent, to_8bit_grid

__all__ = ["long_edge_size", "needs_model", "resize", "resize_long_edge"]  # sizes: shipped

Method = Literal["lanczos", "bicubic", "bilinear", "box", "nearest"]

_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


def resize(array: np.ndarray, size: tuple[int, int], method: Method = "lanczos") -> np.ndarray:
    """Resize an HxW or HxWxC float array to size=(width, height), channel by channel.

    Values are not clipped: Lanczos and bicubic overshoot, callers clip where it matters.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"resize target must be at least 1x1, got {width}x{height}")
    if array.shape[1] == width and array.shape[0] == height:
        return array.astype(np.float32, copy=True)
    resample = _FILTERS[method]

    def one(plane: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
        return np.array(image.resize((width, height), resample=resample), dtype=np.float32)

    if array.ndim == 2:
        return one(array)
    return np.stack([one(array[..., c]) for c in range(array.shape[2])], axis=-1)


def resize_long_edge(
    rgb: np.ndarray, alpha: np.ndarray | None, target: int
) -> tuple[np.ndarray, np.ndarray | None]:
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
    at_rgb = alpha if alpha.shape == (height, width) else resize(alpha, (width, height), "bilinear")
    rgb = fill_transparent(rgb, np.clip(at_rgb, 0.0, 1.0))
    return to_8bit_grid(resize(rgb, size, "lanczos")), to_8bit_grid(resize(alpha, size, "lanczos"))
