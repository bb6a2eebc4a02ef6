"""Removal masks: rasterised rect/polygon regions, mask images, dilation."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .errors import InvalidRegionsError
from .resize import resize

Units = Literal["px", "normalized"]


def parse_regions(text: str) -> list[dict[str, Any]]:
    """Regions from their JSON text (the handler passes params.regions as a JSON string)."""
    try:
        regions = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise InvalidRegionsError(f"SimplyPNG: regions is not valid JSON: {exc.msg}") from None
    if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
        raise InvalidRegionsError("SimplyPNG: regions must be a JSON list of objects")
    return regions


def _number(region: dict[str, Any], key: str) -> float:
    value = region.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRegionsError(f"SimplyPNG: region field {key!r} must be a number")
    return float(value)


def _points(region: dict[str, Any]) -> list[tuple[float, float]]:
    points = region.get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise InvalidRegionsError("SimplyPNG: a polygon needs at least 3 points")
    out = []
    for point in points:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise InvalidRegionsError("SimplyPNG: polygon points must be [x, y] pairs")
        x, y = point
        out.append((_number({"x": x}, "x"), _number({"y": y}, "y")))
    return out


def rasterize_regions(
    regions: list[dict[str, Any]], units: Units, width: int, height: int
) -> np.ndarray:
    """Boolean HxW mask covering every rect (x, y, w, h) and polygon (points) region.

    A rect covers every pixel it touches; normalised coordinates are fractions of width/height.
    """
    sx, sy = (float(width), float(height)) if units == "normalized" else (1.0, 1.0)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    mask = np.zeros((height, width), dtype=bool)
    for region in regions:
        kind = region.get("kind", "rect")
        if kind == "rect":
            x, y = _number(region, "x") * sx, _number(region, "y") * sy
            w, h = _number(region, "w") * sx, _number(region, "h") * sy
            if w <= 0 or h <= 0:
                raise InvalidRegionsError("SimplyPNG: rect w and h must be positive")
            x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
            x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
            mask[y0:y1, x0:x1] = True
        elif kind == "polygon":
            draw.polygon([(px * sx, py * sy) for px, py in _points(region)], fill=255, outline=255)
        else:
            raise InvalidRegionsError(f"SimplyPNG: unknown region kind {kind!r}")
    return mask | (np.asarray(canvas) > 0)


def mask_from_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask from a mask image (white = remove), resized to width x height."""
    luma = image[..., :3].mean(axis=-1) if image.ndim == 3 else image
    if luma.shape != (height, width):
        luma = resize(luma.astype(np.float32), (width, height), "nearest")
    return luma >= 0.5


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by `pixels` (Euclidean distance)."""
    if pixels <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= pixels
