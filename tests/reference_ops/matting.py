"""Matte refinement: edge-aware alpha refinement and foreground colour decontamination.

- `guided_refine`: a colour guided filter (He et al., "Guided Image Filtering", TPAMI 2013, in
  its fast subsampled form, arXiv:1505.00996) snaps a mask that was predicted at low resolution
  and upsampled onto the full-resolution image's edges. It is applied only near the edge.
- `estimate_foreground`: blur-fusion foreground estimation (Forte & Pitie, "Approximate Fast
  Foreground Colour Estimation", ICIP 2021). Edge pixels are a mix I = a*F + (1-a)*B; keeping
  I as the colour leaves a fringe of background colour. Blur fusion recovers F from local
  means of foreground and background in two passes (large radius, then small radius).
- `decontaminate`: blur fusion plus an edge band of `halo` px in which colours are pulled towards
  the nearby solid interior colour, which removes background spill on pixels the mask already
  counts as opaque (a mask a pixel or two too large).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from simplypng.ops.matting import ALPHA_LEVELS, BLUR_FUSION_RADII, GUIDE_EPS, guide_params

from .alpha import snap_alpha, to_8bit_grid
from .resize import resize

# guide_params and the constants are the shipped op's own (pure arithmetic, shared).
__all__ = [
    "ALPHA_LEVELS",
    "BLUR_FUSION_RADII",
    "GUIDE_EPS",
    "decontaminate",
    "defringe",
    "estimate_foreground",
    "guide_params",
    "guided_filter",
    "guided_refine",
    "matte_parts",
    "refine_matte",
]
# Pixels with mask in (LOW, HIGH) are the uncertain edge that the guided filter may change.
_EDGE_LOW, _EDGE_HIGH = 0.02, 0.98


def _box(array: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window in the two image axes (edges reflected)."""
    sizes = (size, size) + (1,) * (array.ndim - 2)
    return ndimage.uniform_filter(array, size=sizes, mode="reflect")


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float = GUIDE_EPS, subsample: int = 1
) -> np.ndarray:
    """Colour guided filter of `src` (HxW) guided by `guide` (HxWx3), optionally subsampled."""
    height, width = src.shape
    if subsample > 1:
        small = (max(1, width // subsample), max(1, height // subsample))
        guide_s = resize(guide, small, "box")
        src_s = resize(src, small, "box")
        radius_s = max(1, round(radius / subsample))
    else:
        guide_s, src_s, radius_s = guide, src, radius
    size = 2 * radius_s + 1

    mean_i = _box(guide_s, size)
    mean_p = _box(src_s, size)
    cov_ip = _box(guide_s * src_s[..., None], size) - mean_i * mean_p[..., None]
    sigma = np.empty((*guide_s.shape[:2], 3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            value = _box(guide_s[..., i] * guide_s[..., j], size) - mean_i[..., i] * mean_i[..., j]
            sigma[..., i, j] = value
            sigma[..., j, i] = value
    sigma += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    mean_a = _box(a, size)
    mean_b = _box(b, size)
    if subsample > 1:
        mean_a = resize(mean_a, (width, height), "bilinear")
        mean_b = resize(mean_b, (width, height), "bilinear")
    return (np.einsum("hwc,hwc->hw", mean_a, guide) + mean_b).astype(np.float32)


def guided_refine(
    image: np.ndarray, mask: np.ndarray, radius: int, subsample: int = 1, eps: float = GUIDE_EPS
) -> np.ndarray:
    """Snap the mask's edge onto the image's edges; pixels away from the edge are kept."""
    mask = np.clip(mask, 0.0, 1.0).astype(np.float32)
    size = 2 * radius + 1
    # The edge band: any window where the mask is not constant (covers soft and jagged edges).
    spread = ndimage.maximum_filter(mask, size=size) - ndimage.minimum_filter(mask, size=size)
    band = spread > _EDGE_LOW
    if not band.any():
        return mask
    refined = np.clip(guided_filter(image[..., :3], mask, radius, eps, subsample), 0.0, 1.0)
    return np.where(band, refined, mask).astype(np.float32)


def _blur_fusion(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    a = alpha[..., None]
    blurred_a = _box(alpha, size)[..., None]
    blurred_f = _box(fg * a, size) / np.maximum(blurred_a, 1e-5)
    blurred_b = _box(bg * (1.0 - a), size) / np.maximum(1.0 - blurred_a, 1e-5)
    fg = blurred_f + a * (image - a * blurred_f - (1.0 - a) * blurred_b)
    return np.clip(fg, 0.0, 1.0), blurred_b


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blur-fusion foreground colours F for I = a*F + (1-a)*B (opaque pixels keep I exactly)."""
    image = image[..., :3].astype(np.float32)
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    fg, bg = image, image
    for size in BLUR_FUSION_RADII:
        fg, bg = _blur_fusion(image, fg, bg, alpha, size)
    # Where alpha is 1 the formula returns I up to rounding; make that exact.
    return np.where(alpha[..., None] >= 1.0, image, fg).astype(np.float32)


def decontaminate(image: np.ndarray, alpha: np.ndarray, halo: int) -> np.ndarray:
    """Foreground colours without background fringe; `halo` is the edge band width in px."""
    fg = estimate_foreground(image, alpha)
    if halo <= 0:
        return fg
    inside = alpha >= 0.5
    if not inside.any() or inside.all():
        return fg
    depth = ndimage.distance_transform_edt(inside)  # 1 on the edge's inner row, 0 outside
    core = (depth > halo).astype(np.float32)
    sigma = float(halo)
    weight_sum = ndimage.gaussian_filter(core, sigma)
    core_colour = ndimage.gaussian_filter(fg * core[..., None], (sigma, sigma, 0))
    core_colour /= np.maximum(weight_sum, 1e-6)[..., None]
    # Pull strength: 1 on the outermost row, fading to 0 at `halo` px inside; thin parts with
    # no solid core nearby (hair, strands) keep the blur-fusion colour.
    pull = np.clip(1.0 - (depth - 1.0) / halo, 0.0, 1.0)
    pull = np.where(alpha > 0, pull, 0.0) * np.clip(weight_sum / 0.1, 0.0, 1.0)
    pull = pull[..., None].astype(np.float32)
    return np.clip(fg * (1.0 - pull) + core_colour * pull, 0.0, 1.0).astype(np.float32)


def defringe(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The outer soft edge (0 < alpha < 0.5) takes the colour of the nearest solid pixel."""
    solid = alpha >= 0.5
    fringe = (alpha > 0) & ~solid
    if not fringe.any() or not solid.any():
        return colour
    _, (rows, cols) = ndimage.distance_transform_edt(~solid, return_indices=True)
    out = colour.copy()
    out[fringe] = colour[rows[fringe], cols[fringe]]
    return out


def matte_parts(
    image: np.ndarray, mask: np.ndarray, halo: int, guide_radius: int = 0, guide_subsample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """refine_matte before its defringe step: (decontaminated colour, snapped alpha)."""
    rgb = image[..., :3].astype(np.float32)
    alpha = np.clip(mask, 0.0, 1.0).astype(np.float32)
    if guide_radius > 0:
        low, high = ALPHA_LEVELS
        refined = guided_refine(rgb, alpha, guide_radius, guide_subsample)
        alpha = np.clip((refined - low) / (high - low), 0.0, 1.0).astype(np.float32)
    alpha = snap_alpha(alpha)
    return (decontaminate(rgb, alpha, halo) if halo > 0 else rgb.copy()), alpha


def refine_matte(
    image: np.ndarray,
    mask: np.ndarray,
    halo: int,
    guide_radius: int = 0,
    guide_subsample: int = 1,
) -> np.ndarray:
    """Straight-alpha RGBA cutout of `image` (HxWx3) with subject coverage `mask` (HxW).

    halo=0 keeps the observed colours; halo>0 decontaminates the edge (see `decontaminate`)
    and defringes its outer soft part (see `defringe`). Colours under alpha 0 are zeroed so the
    removed background does not travel in the file. The result is on the 8-bit grid (see
    `to_8bit_grid`).
    """
    colour, alpha = matte_parts(image, mask, halo, guide_radius, guide_subsample)
    if halo > 0:
        colour = defringe(colour, alpha)
    colour[alpha <= 0] = 0.0
    return to_8bit_grid(np.concatenate([colour, alpha[..., None]], axis=-1))
