"""Quality measures of finished outputs against a scene's ground truth, and their thresholds.

The quality suite (tests/integration/test_quality.py) and the build-time self-test
(handler/selftest.py) both call `check_output`, so the image build fails on exactly what CI
would call a regression. `measure_output` computes the numbers (the self-test prints them);
`problems` compares them with the thresholds below. Pure: decoded output in, numbers or
problems out. The thresholds were set from measurement with the real u2netp on the scenes of
scenes.py (README "The quality suite" lists the measured values); BiRefNet, the stronger
model, is held to the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from handler.quality.scenes import Scene

Measures = dict[str, float]

# Mask IoU (output alpha >= 128 against the truth), by scene kind. Measured with u2netp:
# 0.997 to 1.000 on every scene; the floors leave room for other CPUs' arithmetic, not for a
# worse model.
MIN_IOU: dict[str, float] = {"simple": 0.97, "white": 0.97, "shadow": 0.97, "glass": 0.95}
# Pixels this close to the true edge may be partly transparent in the alpha checks.
EDGE_BAND_PX = 3
# Share of pixels more than EDGE_BAND_PX inside the subject that are exactly opaque, by scene
# kind (glass is see-through: u2netp leaves its body partly transparent), and of those as far
# outside that are exactly clear.
MIN_OPAQUE_SHARE: dict[str, float] = {
    "simple": 0.995,
    "white": 0.995,
    "shadow": 0.995,
    "glass": 0.97,
}
MIN_CLEAR_SHARE = 0.995
# white_bg_ecomm: the subject's long side fills `fill` of the canvas within this.
FILL_TOLERANCE = 0.02
ECOMM_MIN_LONG_SIDE = 1000
# cutout_subject: each margin around the subject is the padding within this many px.
CROP_TOLERANCE_PX = 4
# White over white: a white subject's partly transparent edge keeps RGB at least this.
WHITE_EDGE_MIN = 254


def alpha_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))[..., 3]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def shrink(mask: np.ndarray, px: int) -> np.ndarray:
    """The mask eroded by `px` (a square structuring element, by shifted ANDs)."""
    out = mask.copy()
    for axis in (0, 1):
        for shift in range(1, px + 1):
            for sign in (1, -1):
                moved = np.roll(mask, sign * shift, axis=axis)
                edge = [slice(None)] * 2
                edge[axis] = slice(0, shift) if sign == 1 else slice(-shift, None)
                moved[tuple(edge)] = False
                out &= moved
    return out


def true_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a non-empty mask, exclusive ends."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --- measures -------------------------------------------------------------------------------


def alpha_measures(image: Image.Image, scene: Scene) -> Measures:
    """IoU, and the shares of exactly opaque / clear pixels away from the true edge."""
    alpha = alpha_of(image)
    inside = shrink(scene.mask, EDGE_BAND_PX)
    outside = shrink(~scene.mask, EDGE_BAND_PX)
    return {
        "iou": iou(alpha >= 128, scene.mask),
        "opaque": float((alpha[inside] == 255).mean()),
        "clear": float((alpha[outside] == 0).mean()),
    }


def colour_measures(image: Image.Image) -> Measures:
    """Transparent pixels that keep colour, and the darkest colour on the partial edge."""
    pixels = np.asarray(image.convert("RGBA")).astype(np.int16)
    hidden = pixels[..., 3] == 0
    partial = (pixels[..., 3] > 0) & (pixels[..., 3] < 255)
    return {
        "hidden_coloured": float((pixels[hidden][:, :3] != 0).any(axis=-1).sum()),
        "edge_darkest": float(pixels[partial][:, :3].min()) if partial.any() else 255.0,
    }


def crop_measures(image: Image.Image) -> Measures:
    """The margins around the subject (alpha >= 128) inside the crop."""
    alpha = alpha_of(image)
    if not (alpha >= 128).any():
        return {"margin_min": -1.0, "margin_max": -1.0}
    x0, y0, x1, y1 = true_box(alpha >= 128)
    margins = (x0, y0, image.size[0] - x1, image.size[1] - y1)
    return {"margin_min": float(min(margins)), "margin_max": float(max(margins))}


def ecomm_measures(image: Image.Image) -> Measures:
    """Border purity and how much of the canvas the subject's long side fills."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    subject = (pixels != 255).any(axis=-1)
    fill = 0.0
    if subject.any():
        x0, y0, x1, y1 = true_box(subject)
        fill = max((x1 - x0) / image.size[0], (y1 - y0) / image.size[1])
    return {"border_impure": float((border != 255).any(axis=-1).sum()), "fill": fill}


def measure_output(job_type: str, image: Image.Image, scene: Scene) -> Measures:
    """Every measure that applies to a mask-based type's output on `scene`."""
    if job_type in ("bg_remove", "jpeg_to_png"):
        if image.mode != "RGBA" or image.size != scene.image.size:
            return {}
        return {**alpha_measures(image, scene), **colour_measures(image)}
    if job_type == "cutout_subject":
        return {**crop_measures(image), **colour_measures(image)}
    if job_type == "white_bg_ecomm":
        return ecomm_measures(image)
    raise ValueError(f"{job_type} has no quality check")


# --- thresholds -----------------------------------------------------------------------------


def _alpha_problems(job_type: str, m: Measures, scene: Scene, solid: bool) -> list[str]:
    problems = []
    if m["iou"] < MIN_IOU[scene.kind]:
        problems.append(f"mask IoU {m['iou']:.4f} < {MIN_IOU[scene.kind]}")
    if solid and m["opaque"] < MIN_OPAQUE_SHARE[scene.kind]:
        problems.append(f"only {m['opaque']:.2%} of the subject is opaque")
    if solid and m["clear"] < MIN_CLEAR_SHARE:
        problems.append(f"only {m['clear']:.2%} of the background is clear")
    return problems


def _colour_problems(m: Measures, scene: Scene) -> list[str]:
    problems = []
    if m["hidden_coloured"]:
        problems.append(f"{m['hidden_coloured']:.0f} transparent pixels keep colour")
    if scene.kind == "white" and m["edge_darkest"] < WHITE_EDGE_MIN:
        problems.append(
            f"the white subject's edge is grey (darkest {m['edge_darkest']:.0f} < "
            f"{WHITE_EDGE_MIN}): a halo over white"
        )
    return problems


def _crop_problems(image: Image.Image, m: Measures, scene: Scene, padding: int) -> list[str]:
    x0, y0, x1, y1 = true_box(scene.mask)
    want = (x1 - x0 + 2 * padding, y1 - y0 + 2 * padding)
    if any(abs(g - w) > 2 * CROP_TOLERANCE_PX for g, w in zip(image.size, want, strict=True)):
        return [f"crop {image.size} is not the true box plus padding {want}"]
    if m["margin_min"] < 0:
        return ["the crop holds no subject"]
    if max(abs(m["margin_min"] - padding), abs(m["margin_max"] - padding)) > CROP_TOLERANCE_PX:
        return [f"margins {m['margin_min']:.0f}..{m['margin_max']:.0f} px, want {padding} px"]
    return []


def _ecomm_problems(image: Image.Image, m: Measures, params: Mapping[str, Any]) -> list[str]:
    """Amazon's main-image rules: pure white border, subject fills `fill` of the long side,
    sRGB (8-bit RGB with no other profile), long side at least 1000 px."""
    problems = []
    want = (int(params["canvas_width"]), int(params["canvas_height"]))
    if image.size != want or max(image.size) < ECOMM_MIN_LONG_SIDE:
        problems.append(f"canvas {image.size}, want {want} (long side >= 1000)")
    if image.mode != "RGB" or image.info.get("icc_profile"):
        problems.append(f"not untagged 8-bit sRGB ({image.mode}, ICC profile)")
    if m["border_impure"]:
        problems.append("the border is not pure (255,255,255)")
    target = float(params.get("fill", 0.85))
    if abs(m["fill"] - target) > FILL_TOLERANCE:
        problems.append(f"the subject fills {m['fill']:.3f} of the long side, want {target}")
    return problems


def check_output(
    job_type: str, params: Mapping[str, Any], scene: Scene, image: Image.Image
) -> list[str]:
    """Every problem with a mask-based type's output on `scene` (empty when it is right)."""
    return problems_in(job_type, params, scene, image, measure_output(job_type, image, scene))


def problems_in(
    job_type: str, params: Mapping[str, Any], scene: Scene, image: Image.Image, m: Measures
) -> list[str]:
    """The problems `measure_output`'s measures `m` of this output show."""
    if job_type in ("bg_remove", "jpeg_to_png") and not m:
        found = [f"expected RGBA {scene.image.size}, got {image.mode} {image.size}"]
    elif job_type in ("bg_remove", "jpeg_to_png"):
        # jpeg_to_png's subject alpha must be solid; bg_remove keeps a soft edge by design.
        solid = job_type == "jpeg_to_png"
        found = [*_alpha_problems(job_type, m, scene, solid), *_colour_problems(m, scene)]
    elif job_type == "cutout_subject":
        if params.get("padding_unit") != "px":
            raise ValueError("the crop check needs padding in px")
        padding = int(params.get("padding", 0))
        found = [*_crop_problems(image, m, scene, padding), *_colour_problems(m, scene)]
    else:
        found = _ecomm_problems(image, m, params)
    return [f"{job_type}: {problem} ({scene.name})" for problem in found]
