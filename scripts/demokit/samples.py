"""Deterministic synthetic sample images, one per processing type, drawn by code.

Product-like subjects (a bottle, a mug, a box with a price tag, a perfume flacon, a small still
life, a ceramic jar) with simple shading on studio backdrops, so the contact sheet reads like a
catalogue page and no binary files live in the repository. The products of the mask-based
types also come with their ground truth: the subject's anti-aliased coverage as drawn (its
cast shadow is not part of it), which the tests compare the real u2netp's alpha with.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUPERSAMPLE = 4  # shapes are drawn this much larger, then reduced: smooth edges
Rgb = tuple[int, int, int]
Draw = Callable[[ImageDraw.ImageDraw, float], None]


# The types whose workflow cuts the subject out with a segmenter (its `segmenter` param).
MASK_TYPES = ("bg_remove", "cutout_subject", "white_bg_ecomm", "jpeg_to_png")
SEGMENTERS = ("u2netp", "birefnet")


@dataclass(frozen=True)
class Sample:
    job_type: str
    path: Path
    content_type: str
    size: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)
    caption: str = ""
    # The subject's coverage (H x W, 0..1) as drawn, for the mask-based types; else None.
    subject: np.ndarray | None = field(default=None, compare=False, repr=False)


# --- drawing helpers ------------------------------------------------------------------------


def _mask(size: tuple[int, int], draw: Draw) -> np.ndarray:
    """An anti-aliased coverage mask (H x W, 0..1); `draw` gets the supersampling factor."""
    width, height = size
    big = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw(ImageDraw.Draw(big), SUPERSAMPLE)
    small = big.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _scaled(coords: tuple[float, ...], s: float) -> list[float]:
    return [c * s for c in coords]


def _polygon(coords: tuple[float, ...], d: ImageDraw.ImageDraw, s: float) -> None:
    d.polygon(_scaled(coords, s), fill=255)


def _backdrop(size: tuple[int, int], top: Rgb, bottom: Rgb, horizon: float = 0.62) -> np.ndarray:
    """A studio sweep: wall colour above, a lighter floor below, a soft vignette."""
    width, height = size
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    blend = np.clip((y - horizon + 0.18) / 0.36, 0.0, 1.0)
    blend = blend * blend * (3 - 2 * blend)  # smoothstep: a curved sweep, no hard line
    image = (1 - blend)[..., None] * np.array(top, np.float32) + blend[..., None] * np.array(
        bottom, np.float32
    )
    vignette = 1.0 - 0.08 * (x**2) - 0.05 * ((y - 0.5) * 2) ** 2
    return np.clip(image * vignette[..., None], 0, 255) / 255.0


def _composite(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray | Rgb) -> None:
    """Paint `colour` (an H x W x 3 array in 0..1 or an RGB tuple) over canvas through mask."""
    paint = colour if isinstance(colour, np.ndarray) else np.array(colour, np.float32) / 255.0
    canvas[:] = canvas * (1 - mask[..., None]) + paint * mask[..., None]


def _shadow(canvas: np.ndarray, box: tuple[float, float, float, float], blur: float, k: float):
    """A soft elliptical contact shadow darkening the floor by up to `k`."""
    height, width = canvas.shape[:2]
    mask = _mask((width, height), lambda d, s: d.ellipse(_scaled(box, s), fill=255))
    blurred = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    shade = np.asarray(blurred, np.float32) / 255.0 * k
    canvas[:] = canvas * (1 - shade[..., None])


def _cylinder(width: int, height: int, x0: float, x1: float, colour: Rgb, gloss: float):
    """Per-column shading of a vertical cylinder lit from the upper left, as an image."""
    x = np.arange(width, dtype=np.float32) + 0.5
    t = np.clip((x - (x0 + x1) / 2) / max((x1 - x0) / 2, 1.0), -1.0, 1.0)
    diffuse = 0.42 + 0.58 * np.sqrt(np.clip(1 - t * t, 0, 1))
    specular = gloss * np.exp(-(((t + 0.48) / 0.11) ** 2)) + 0.35 * gloss * np.exp(
        -(((t - 0.72) / 0.06) ** 2)
    )
    base = np.array(colour, np.float32) / 255.0
    row = np.clip(base[None, :] * diffuse[:, None] + specular[:, None], 0, 1)
    return np.broadcast_to(row[None, :, :], (height, width, 3)).copy()


def _sphere(size: tuple[int, int], centre: tuple[float, float], radius: float, colour: Rgb):
    """A lit sphere as an image plus its coverage mask."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    dx, dy = (xx - centre[0]) / radius, (yy - centre[1]) / radius
    r2 = dx * dx + dy * dy
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    light = np.array([-0.45, -0.6, 0.66], np.float32)
    light /= np.linalg.norm(light)
    diffuse = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0, 1)
    specular = np.clip(diffuse, 0, 1) ** 40 * 0.6
    base = np.array(colour, np.float32) / 255.0
    image = np.clip(base * (0.22 + 0.78 * diffuse)[..., None] + specular[..., None], 0, 1)
    mask = _mask(
        size,
        lambda d, s: d.ellipse(
            _scaled(
                (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius), s
            ),
            fill=255,
        ),
    )
    return image, mask


def _to_image(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


# --- the subjects ---------------------------------------------------------------------------


def bottle_photo(size: tuple[int, int] = (640, 800)) -> tuple[Image.Image, np.ndarray]:
    """An amber glass bottle with a black cap and a paper label (for bg_remove); returns the
    image and the subject's coverage. (A white cap on this pale sweep came out half
    transparent with u2netp, the lite model: a hard case that is BiRefNet's job.)"""
    width, height = size
    canvas = _backdrop(size, (226, 222, 216), (244, 242, 238))
    cx, bottom = width / 2, height * 0.86
    body = (cx - 120, height * 0.36, cx + 120, bottom)
    _shadow(canvas, (cx - 150, bottom - 22, cx + 170, bottom + 24), blur=14, k=0.35)

    def glass(d: ImageDraw.ImageDraw, s: float) -> None:
        d.rounded_rectangle(_scaled(body, s), radius=34 * s, fill=255)
        shoulders: tuple[float, ...] = (cx - 118, height * 0.40, cx - 46, height * 0.25)
        shoulders += (cx + 46, height * 0.25, cx + 118, height * 0.40)
        d.polygon(_scaled(shoulders, s), fill=255)
        d.rectangle(_scaled((cx - 46, height * 0.16, cx + 46, height * 0.27), s), fill=255)

    glass_mask = _mask(size, glass)
    _composite(canvas, glass_mask, _cylinder(width, height, cx - 120, cx + 120, (150, 78, 20), 0.5))
    cap = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 54, height * 0.09, cx + 54, height * 0.17), s), radius=8 * s, fill=255
        ),
    )
    _composite(canvas, cap, _cylinder(width, height, cx - 54, cx + 54, (44, 44, 48), 0.35))
    label = _mask(
        size,
        lambda d, s: d.rectangle(
            _scaled((cx - 119, height * 0.52, cx + 119, height * 0.74), s), fill=255
        ),
    )
    _composite(canvas, label, _cylinder(width, height, cx - 120, cx + 120, (240, 232, 210), 0.12))
    stripe = _mask(
        size,
        lambda d, s: d.rectangle(
            _scaled((cx - 119, height * 0.60, cx + 119, height * 0.64), s), fill=255
        ),
    )
    _composite(canvas, stripe, _cylinder(width, height, cx - 120, cx + 120, (160, 40, 40), 0.1))
    return _to_image(canvas), np.maximum(glass_mask, cap)


def mug_photo(size: tuple[int, int] = (800, 600)) -> tuple[Image.Image, np.ndarray]:
    """A teal mug with a handle, off centre on a pale blue sweep (for cutout_subject); returns
    the image and the subject's coverage (the sweep shows through the handle)."""
    width, height = size
    canvas = _backdrop(size, (206, 220, 232), (232, 238, 244), horizon=0.58)
    x0, x1, top, bottom = width * 0.22, width * 0.50, height * 0.34, height * 0.80
    _shadow(canvas, (x0 - 10, bottom - 16, x1 + 90, bottom + 20), blur=12, k=0.3)
    handle = _mask(
        size,
        lambda d, s: d.ellipse(
            _scaled((x1 - 40, top + 50, x1 + 80, bottom - 60), s), outline=255, width=int(22 * s)
        ),
    )
    _composite(canvas, handle, (18, 118, 124))
    body = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((x0, top, x1, bottom), s), radius=22 * s, fill=255
        ),
    )
    _composite(canvas, body, _cylinder(width, height, x0, x1, (24, 150, 158), 0.35))
    rim = _mask(
        size, lambda d, s: d.ellipse(_scaled((x0 + 3, top - 16, x1 - 3, top + 16), s), fill=255)
    )
    _composite(canvas, rim, (22, 96, 102))
    inner = _mask(
        size, lambda d, s: d.ellipse(_scaled((x0 + 12, top - 10, x1 - 12, top + 11), s), fill=255)
    )
    _composite(canvas, inner, (48, 40, 36))
    return _to_image(canvas), np.maximum.reduce([handle, body, rim])


def tagged_box_photo(size: tuple[int, int] = (800, 600)) -> tuple[Image.Image, dict[str, int]]:
    """A cardboard box beside a red SALE tag; returns the image and the tag's rectangle."""
    canvas = _backdrop(size, (232, 228, 222), (246, 244, 240))
    _shadow(canvas, (150, 470, 470, 520), blur=12, k=0.3)
    front = (160, 230, 380, 490)
    side = (380, 230, 470, 190, 470, 450, 380, 490)
    top = (160, 230, 250, 190, 470, 190, 380, 230)
    for poly, colour in (
        (side, (170, 124, 78)),
        (top, (214, 172, 122)),
    ):
        _composite(canvas, _mask(size, functools.partial(_polygon, poly)), colour)
    _composite(
        canvas,
        _mask(size, lambda d, s: d.rectangle(_scaled(front, s), fill=255)),
        (196, 150, 100),
    )
    tape = _mask(size, lambda d, s: d.rectangle(_scaled((256, 230, 284, 490), s), fill=255))
    _composite(canvas, tape, (224, 200, 160))
    tag = {"x": 560, "y": 250, "w": 170, "h": 170}
    cx, cy, r = tag["x"] + 85, tag["y"] + 85, 70
    disc = _mask(
        size, lambda d, s: d.ellipse(_scaled((cx - r, cy - r, cx + r, cy + r), s), fill=255)
    )
    _composite(canvas, disc, (206, 34, 44))
    image = _to_image(canvas)
    draw = ImageDraw.Draw(image)
    draw.text((cx, cy), "SALE", fill=(255, 255, 255), font=_font(40), anchor="mm")
    return image, tag


def perfume_photo(size: tuple[int, int] = (700, 700)) -> tuple[Image.Image, np.ndarray]:
    """A rose-tinted square flacon with a gold cap and collar on a sage backdrop (for
    white_bg_ecomm); returns the image and the subject's coverage. (A pale steel collar came
    out half transparent with u2netp.)"""
    width, height = size
    canvas = _backdrop(size, (150, 170, 150), (186, 202, 184), horizon=0.66)
    cx, bottom = width / 2, height * 0.84
    _shadow(canvas, (cx - 150, bottom - 18, cx + 170, bottom + 22), blur=12, k=0.35)
    glass = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 130, height * 0.40, cx + 130, bottom), s), radius=26 * s, fill=255
        ),
    )
    _composite(canvas, glass, _cylinder(width, height, cx - 130, cx + 130, (214, 120, 140), 0.3))
    liquid = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 112, height * 0.52, cx + 112, bottom - 16), s), radius=18 * s, fill=255
        ),
    )
    _composite(
        canvas, liquid * 0.55, _cylinder(width, height, cx - 112, cx + 112, (170, 40, 80), 0.2)
    )
    neck = _mask(
        size,
        lambda d, s: d.rectangle(
            _scaled((cx - 30, height * 0.33, cx + 30, height * 0.41), s), fill=255
        ),
    )
    _composite(canvas, neck, _cylinder(width, height, cx - 30, cx + 30, (150, 122, 60), 0.3))
    cap = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 62, height * 0.18, cx + 62, height * 0.34), s), radius=10 * s, fill=255
        ),
    )
    _composite(canvas, cap, _cylinder(width, height, cx - 62, cx + 62, (196, 160, 70), 0.45))
    return _to_image(canvas), np.maximum.reduce([glass, neck, cap])


def still_life_photo(size: tuple[int, int] = (384, 288)) -> Image.Image:
    """A small still life (orange, plum, table, window light) for upscale_2k."""
    width, height = size
    canvas = _backdrop(size, (118, 132, 150), (164, 128, 92), horizon=0.6)
    window = _mask(
        size,
        lambda d, s: d.rectangle(
            _scaled((width * 0.62, 20, width * 0.9, height * 0.42), s), fill=255
        ),
    )
    blurred = Image.fromarray((window * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6))
    _composite(canvas, np.asarray(blurred, np.float32) / 255.0 * 0.6, (236, 232, 214))
    _shadow(canvas, (width * 0.22, height * 0.74, width * 0.56, height * 0.84), blur=5, k=0.4)
    _shadow(canvas, (width * 0.52, height * 0.76, width * 0.76, height * 0.84), blur=5, k=0.4)
    for centre, radius, colour in (
        ((width * 0.38, height * 0.62), 52, (236, 128, 24)),
        ((width * 0.64, height * 0.68), 36, (110, 36, 86)),
    ):
        image, mask = _sphere(size, centre, radius, colour)
        _composite(canvas, mask, image)
    return _to_image(canvas)


def jar_photo(size: tuple[int, int] = (640, 560)) -> tuple[Image.Image, np.ndarray]:
    """A cream ceramic jar with a walnut lid and a paper band on a dusty rose sweep, as a
    camera JPEG would carry it (for jpeg_to_png); returns the image and the subject's coverage."""
    width, height = size
    canvas = _backdrop(size, (214, 184, 180), (236, 222, 216), horizon=0.64)
    cx, bottom = width * 0.5, height * 0.84
    _shadow(canvas, (cx - 150, bottom - 18, cx + 175, bottom + 22), blur=12, k=0.32)
    body = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 135, height * 0.36, cx + 135, bottom), s), radius=40 * s, fill=255
        ),
    )
    _composite(canvas, body, _cylinder(width, height, cx - 135, cx + 135, (238, 228, 206), 0.22))
    band = _mask(
        size,
        lambda d, s: d.rectangle(
            _scaled((cx - 134, height * 0.52, cx + 134, height * 0.68), s), fill=255
        ),
    )
    _composite(canvas, band, _cylinder(width, height, cx - 135, cx + 135, (120, 150, 112), 0.08))
    lid = _mask(
        size,
        lambda d, s: d.rounded_rectangle(
            _scaled((cx - 142, height * 0.22, cx + 142, height * 0.37), s), radius=14 * s, fill=255
        ),
    )
    wood = _cylinder(width, height, cx - 142, cx + 142, (122, 78, 44), 0.18)
    grain = 1.0 + 0.07 * np.sin(np.arange(height, dtype=np.float32) * 1.7)[:, None, None]
    _composite(canvas, lid, np.clip(wood * grain, 0, 1))
    image = _to_image(canvas)
    ImageDraw.Draw(image).text(
        (cx, height * 0.60), "SEA SALT", fill=(246, 242, 230), font=_font(30), anchor="mm"
    )
    return image, np.maximum(body, lid)


# --- writing the set ------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, fmt, quality=92, subsampling=0)
    else:
        image.save(buffer, fmt, optimize=True)
    path.write_bytes(buffer.getvalue())


def write_samples(
    folder: Path, types: list[str] | tuple[str, ...], *, segmenter: str = "u2netp"
) -> dict[str, Sample]:
    """Draw and save the sample of each requested type; returns them by type. The mask-based
    types (MASK_TYPES) ask for `segmenter`."""
    if segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {segmenter!r} (known: {', '.join(SEGMENTERS)})")
    folder.mkdir(parents=True, exist_ok=True)
    samples: dict[str, Sample] = {}

    def add(
        job_type: str,
        drawn: Image.Image | tuple[Image.Image, np.ndarray],
        name: str,
        params: dict[str, Any],
        caption: str,
    ) -> None:
        image, subject = drawn if isinstance(drawn, tuple) else (drawn, None)
        if job_type in MASK_TYPES:
            params = {**params, "segmenter": segmenter}
        fmt = "JPEG" if name.endswith(".jpg") else "PNG"
        path = folder / name
        _save(image, path, fmt)
        content_type = "image/jpeg" if fmt == "JPEG" else "image/png"
        samples[job_type] = Sample(
            job_type, path, content_type, image.size, params, caption, subject
        )

    wanted = set(types)
    if "bg_remove" in wanted:
        add("bg_remove", bottle_photo(), "bottle.png", {}, "amber bottle, studio sweep")
    if "cutout_subject" in wanted:
        add(
            "cutout_subject",
            mug_photo(),
            "mug.jpg",
            {"padding": 6, "square": True},
            "mug off centre: tight square crop",
        )
    if "object_remove" in wanted:
        image, tag = tagged_box_photo()
        add(
            "object_remove",
            image,
            "box_with_tag.png",
            {"regions": [{"kind": "rect", **tag}], "units": "px"},
            "remove the SALE tag (rect region)",
        )
    if "white_bg_ecomm" in wanted:
        add(
            "white_bg_ecomm",
            perfume_photo(),
            "perfume.jpg",
            {"shadow": True},
            "perfume on sage: 2000x2000 white canvas",
        )
    if "upscale_2k" in wanted:
        add("upscale_2k", still_life_photo(), "still_life.png", {}, "384x288 still life to 2048")
    if "jpeg_to_png" in wanted:
        add(
            "jpeg_to_png",
            jar_photo(),
            "jar.jpg",
            {"transparent": "subject"},
            "jar JPEG: PNG with the subject's alpha",
        )
    return samples
