"""Synthetic product photos with known ground truth, for the quality suite and the self-test.

Each scene is a studio shot drawn from shapes: a light sweep (a vertical gradient with a soft
floor line and a little sensor noise) and one product, shaded like a lit cylinder or box. The
product's coverage is drawn at 4x and box-filtered down, so its edges are anti-aliased like a
photo's; the ground-truth mask is coverage >= 0.5. Glass is drawn see-through (the background
shows through a tinted body with a dark rim and a highlight) and a cast shadow darkens the floor
without being part of the subject. Pure numpy and Pillow, seeded: the same pixels every run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4
WIDTH, HEIGHT = 512, 384

Box = tuple[float, float, float, float]
Drawer = Callable[[ImageDraw.ImageDraw, float], None]


@dataclass(frozen=True)
class Scene:
    name: str
    image: Image.Image  # RGB
    coverage: np.ndarray  # float32 HxW in 0..1: the subject's anti-aliased coverage
    kind: str  # "simple", "white", "glass" or "shadow": which thresholds apply

    @property
    def mask(self) -> np.ndarray:
        """The ground-truth subject mask (bool HxW)."""
        return self.coverage >= 0.5


def _coverage(draw: Drawer, width: int, height: int) -> np.ndarray:
    """Anti-aliased coverage of shapes drawn by `draw` (given the supersampling scale)."""
    big = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw(ImageDraw.Draw(big), SUPERSAMPLE)
    small = big.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _sweep(width: int, height: int, top: float, floor: float, seed: int) -> np.ndarray:
    """A studio sweep: light at the top, a little darker on the floor, soft horizon, noise."""
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    ramp = 1.0 / (1.0 + np.exp(-(yy - 0.72) * 18.0))
    level = top + (floor - top) * ramp
    noise = np.random.default_rng(seed).normal(0.0, 1.2, (height, width)).astype(np.float32)
    grey = np.broadcast_to(level, (height, width)) + noise
    return np.dstack([grey, grey + 1.0, grey + 3.0])


def _cylinder_shade(width: int, centre: float, radius: float) -> np.ndarray:
    """Brightness across a lit cylinder: a key light from the left, falling off to the right."""
    xx = (np.arange(width, dtype=np.float32) - centre) / max(radius, 1.0)
    lit = np.clip(1.0 - 0.55 * (xx + 0.35) ** 2, 0.25, 1.0)
    return lit[None, :, None]


def _compose(background: np.ndarray, colour: np.ndarray, coverage: np.ndarray) -> Image.Image:
    alpha = coverage[..., None]
    pixels = background * (1.0 - alpha) + colour * alpha
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def _bottle(draw: ImageDraw.ImageDraw, s: float, cx: float, top: float, bottom: float) -> None:
    body_w, neck_w = 70 * s, 22 * s
    shoulder = top + (bottom - top) * 0.38
    draw.rounded_rectangle(
        (cx * s - body_w, shoulder * s, cx * s + body_w, bottom * s), radius=18 * s, fill=255
    )
    draw.polygon(
        [
            (cx * s - body_w, shoulder * s + 20 * s),
            (cx * s - neck_w, (top + 38) * s),
            (cx * s + neck_w, (top + 38) * s),
            (cx * s + body_w, shoulder * s + 20 * s),
        ],
        fill=255,
    )
    draw.rectangle((cx * s - neck_w, top * s, cx * s + neck_w, (top + 40) * s), fill=255)


def amber_bottle(seed: int = 1) -> Scene:
    """An amber bottle (opaque) on a grey sweep: the simplest product shot."""
    cov = _coverage(lambda d, s: _bottle(d, s, 256, 40, 350), WIDTH, HEIGHT)
    shade = _cylinder_shade(WIDTH, 256, 70)
    colour = np.array([196, 112, 28], np.float32) * shade
    return Scene(
        "amber_bottle", _compose(_sweep(WIDTH, HEIGHT, 222, 196, seed), colour, cov), cov, "simple"
    )


def red_box(seed: int = 2) -> Scene:
    """A red carton seen from slightly above: a front face, a lit top face, a darker side."""

    def faces(d: ImageDraw.ImageDraw, s: float) -> None:
        d.polygon(
            [(150 * s, 120 * s), (330 * s, 120 * s), (370 * s, 90 * s), (190 * s, 90 * s)], fill=255
        )
        d.rectangle((150 * s, 120 * s, 330 * s, 340 * s), fill=255)
        d.polygon(
            [(330 * s, 120 * s), (370 * s, 90 * s), (370 * s, 305 * s), (330 * s, 340 * s)],
            fill=255,
        )

    cov = _coverage(faces, WIDTH, HEIGHT)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    colour = np.empty((HEIGHT, WIDTH, 3), np.float32)
    colour[:] = (190, 30, 36)
    colour[yy < 120] = (232, 70, 70)  # top face, lit
    colour[(xx > 330) & (yy >= 120)] = (120, 16, 22)  # side face, in shade
    return Scene(
        "red_box", _compose(_sweep(WIDTH, HEIGHT, 228, 205, seed), colour, cov), cov, "simple"
    )


def blue_mug(seed: int = 3) -> Scene:
    """A blue mug with a handle: the background shows through the handle's hole."""

    def mug(d: ImageDraw.ImageDraw, s: float) -> None:
        d.rounded_rectangle((170 * s, 110 * s, 320 * s, 330 * s), radius=14 * s, fill=255)
        d.ellipse((280 * s, 160 * s, 380 * s, 280 * s), fill=255)
        d.ellipse((306 * s, 186 * s, 354 * s, 254 * s), fill=0)  # the hole in the handle
        d.rounded_rectangle((170 * s, 110 * s, 320 * s, 330 * s), radius=14 * s, fill=255)

    cov = _coverage(mug, WIDTH, HEIGHT)
    colour = np.array([38, 86, 190], np.float32) * _cylinder_shade(WIDTH, 245, 75)
    return Scene(
        "blue_mug", _compose(_sweep(WIDTH, HEIGHT, 225, 200, seed), colour, cov), cov, "simple"
    )


def green_tube(seed: int = 4) -> Scene:
    """A lying green tube (a cosmetics tube) with a white cap: two colours, a long thin shape."""

    def tube(d: ImageDraw.ImageDraw, s: float) -> None:
        d.polygon(
            [(90 * s, 170 * s), (360 * s, 150 * s), (360 * s, 260 * s), (90 * s, 240 * s)], fill=255
        )
        d.rounded_rectangle((356 * s, 170 * s, 430 * s, 240 * s), radius=8 * s, fill=255)

    cov = _coverage(tube, WIDTH, HEIGHT)
    xx = np.arange(WIDTH)[None, :]
    colour = np.empty((HEIGHT, WIDTH, 3), np.float32)
    colour[:] = (46, 150, 82)
    colour[:, xx[0] >= 358] = (236, 236, 232)  # the cap
    yy = np.linspace(-1, 1, HEIGHT, dtype=np.float32)[:, None, None]
    colour *= np.clip(1.0 - 0.3 * (yy + 0.1) ** 2, 0.6, 1.0)
    return Scene(
        "green_tube", _compose(_sweep(WIDTH, HEIGHT, 218, 192, seed), colour, cov), cov, "simple"
    )


def white_jar(seed: int = 5) -> Scene:
    """A white jar on a mid-grey sweep: its anti-aliased edge must stay white after the cut."""

    def jar(d: ImageDraw.ImageDraw, s: float) -> None:
        d.rounded_rectangle((176 * s, 120 * s, 336 * s, 330 * s), radius=22 * s, fill=255)
        d.rectangle((190 * s, 96 * s, 322 * s, 124 * s), fill=255)  # the lid

    cov = _coverage(jar, WIDTH, HEIGHT)
    colour = np.full((HEIGHT, WIDTH, 3), 255.0, np.float32)
    return Scene(
        "white_jar", _compose(_sweep(WIDTH, HEIGHT, 150, 128, seed), colour, cov), cov, "white"
    )


def glass_bottle(seed: int = 6) -> Scene:
    """A clear green glass bottle: the sweep shows through its body, a dark rim outlines it."""
    cov = _coverage(lambda d, s: _bottle(d, s, 256, 40, 350), WIDTH, HEIGHT)
    background = _sweep(WIDTH, HEIGHT, 226, 200, seed)
    inner = (
        np.asarray(
            Image.fromarray((cov * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(9)),
            np.float32,
        )
        / 255.0
    )
    rim = np.clip(cov - inner, 0, 1)[..., None]
    tint = np.array([0.62, 0.86, 0.66], np.float32)
    glass = background * tint * 0.85
    colour = glass * (1 - rim) + np.array([40, 70, 48], np.float32) * rim
    highlight = (np.abs(np.arange(WIDTH) - 218) < 7)[None, :, None] * inner[..., None]
    colour = colour * (1 - highlight) + 250.0 * highlight
    return Scene("glass_bottle", _compose(background, colour, cov), cov, "glass")


def shadowed_can(seed: int = 7) -> Scene:
    """An orange can with a long soft shadow cast on the floor, which is not the subject."""
    cov = _coverage(
        lambda d, s: d.rounded_rectangle(
            (196 * s, 90 * s, 296 * s, 330 * s), radius=10 * s, fill=255
        ),
        WIDTH,
        HEIGHT,
    )
    background = _sweep(WIDTH, HEIGHT, 226, 204, seed)
    shadow = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(shadow).polygon([(290, 330), (300, 300), (470, 350), (440, 372)], fill=255)
    soft = np.asarray(shadow.filter(ImageFilter.GaussianBlur(9)), np.float32)[..., None] / 255.0
    background = background * (1.0 - 0.45 * soft)
    colour = np.array([236, 120, 24], np.float32) * _cylinder_shade(WIDTH, 240, 50)
    return Scene("shadowed_can", _compose(background, colour, cov), cov, "shadow")


SCENES: dict[str, Callable[[], Scene]] = {
    "amber_bottle": amber_bottle,
    "red_box": red_box,
    "blue_mug": blue_mug,
    "green_tube": green_tube,
    "white_jar": white_jar,
    "glass_bottle": glass_bottle,
    "shadowed_can": shadowed_can,
}


@functools.cache
def scene(name: str) -> Scene:
    """A scene by name, drawn once per process (each is a few supersampled draws)."""
    return SCENES[name]()


def all_scenes() -> list[Scene]:
    return [scene(name) for name in SCENES]
