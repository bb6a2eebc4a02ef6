"""Removal regions from a job's params: JSON parsing and rasterisation into a boolean mask.

This runs on the host (Pillow draws polygons; exact fractions clip them): the regions are
params, not pixels a model produced. `masks.regions_mask` moves the result to the device.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from .errors import InvalidRegionsError

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


Point = tuple[Fraction, Fraction]
# Polygons are clipped this far outside the image: far enough that rounding the clipped
# vertices changes nothing inside, near enough for the rasteriser's 32-bit coordinates.
CLIP_MARGIN = 1 << 20


def _cross(a: Point, b: Point, axis: int, bound: int) -> Point:
    """Where segment a-b meets the line `coordinate[axis] == bound`."""
    t = (bound - a[axis]) / (b[axis] - a[axis])
    other = a[1 - axis] + t * (b[1 - axis] - a[1 - axis])
    return (Fraction(bound), other) if axis == 0 else (other, Fraction(bound))


def clip_polygon(
    points: list[Point], width: int, height: int, margin: int = CLIP_MARGIN
) -> list[Point]:
    """The part of a polygon inside the image grown by `margin` px on every side.

    Sutherland-Hodgman on exact fractions: coordinates of any size (1e308 px, or a
    normalised 1e308 times the width) neither overflow nor move the polygon's edges, and
    what is left fits the rasteriser's integer coordinates. The rasteriser rounds the new
    vertices, which are `margin` away: inside the image that shifts an edge by at most
    about 0.5 * image size / margin px.
    """
    sides = (
        (0, -margin, False),
        (0, width + margin, True),
        (1, -margin, False),
        (1, height + margin, True),
    )
    if all(-margin <= x <= width + margin and -margin <= y <= height + margin for x, y in points):
        return points
    for axis, bound, upper in sides:
        points = _clip_side(points, axis, bound, upper)
    return points


def _clip_side(points: list[Point], axis: int, bound: int, upper: bool) -> list[Point]:
    def inside(p: Point) -> bool:
        return p[axis] <= bound if upper else p[axis] >= bound

    clipped: list[Point] = []
    for index, current in enumerate(points):
        previous = points[index - 1]
        if inside(current):
            if not inside(previous):
                clipped.append(_cross(previous, current, axis, bound))
            clipped.append(current)
        elif inside(previous):
            clipped.append(_cross(previous, current, axis, bound))
    return clipped


def _span(start: Fraction, length: Fraction, size: int) -> slice:
    """Pixels a [start, start + length) interval touches, within 0..size (exact, no overflow)."""
    return slice(min(size, max(0, math.floor(start))), min(size, max(0, math.ceil(start + length))))


def rasterize_regions(
    regions: list[dict[str, Any]], units: Units, width: int, height: int
) -> np.ndarray:
    """Boolean HxW mask covering every rect (x, y, w, h) and polygon (points) region.

    A rect covers every pixel it touches; normalised coordinates are fractions of width/height.
    Regions that together cover no pixel of the image are an error: a job would be charged
    for returning its input unchanged.
    """
    sx, sy = (width, height) if units == "normalized" else (1, 1)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    mask = np.zeros((height, width), dtype=bool)
    for region in regions:
        kind = region.get("kind", "rect")
        if kind == "rect":
            x, y = Fraction(_number(region, "x")) * sx, Fraction(_number(region, "y")) * sy
            w, h = Fraction(_number(region, "w")) * sx, Fraction(_number(region, "h")) * sy
            if w <= 0 or h <= 0:
                raise InvalidRegionsError("SimplyPNG: rect w and h must be positive")
            mask[_span(y, h, height), _span(x, w, width)] = True
        elif kind == "polygon":
            scaled = [(Fraction(px) * sx, Fraction(py) * sy) for px, py in _points(region)]
            inside = clip_polygon(scaled, width, height)
            if len(inside) >= 3:
                draw.polygon([(float(px), float(py)) for px, py in inside], fill=255, outline=255)
        else:
            raise InvalidRegionsError(f"SimplyPNG: unknown region kind {kind!r}")
    mask |= np.asarray(canvas) > 0
    if regions and not mask.any():
        raise InvalidRegionsError("SimplyPNG: the regions do not cover any pixel of the image")
    return mask
