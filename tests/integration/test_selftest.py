"""The build-time self-test: its checks catch wrong outputs, and it runs through the pipeline."""

from __future__ import annotations

import numpy as np
from PIL import Image

from handler.selftest import CASES, check_output, output_sink, run_cases, synthetic_product

CASE = {case.job_type: case for case in CASES}


def rgba_from_mask(mask: np.ndarray) -> Image.Image:
    pixels = np.zeros((*mask.shape, 4), np.uint8)
    pixels[..., 3] = mask * 255
    return Image.fromarray(pixels, "RGBA")


def test_mask_iou_check() -> None:
    source, truth = synthetic_product(128)
    assert check_output(CASE["bg_remove"], source, truth, rgba_from_mask(truth)) == []
    shifted = np.roll(truth, 20, axis=1)
    [problem] = check_output(CASE["bg_remove"], source, truth, rgba_from_mask(shifted))
    assert "IoU" in problem


def test_upscale_check_wants_exact_long_edge() -> None:
    source, truth = synthetic_product(64)
    assert check_output(CASE["upscale_2k"], source, truth, Image.new("RGB", (2048, 2048))) == []
    assert check_output(CASE["upscale_2k"], source, truth, Image.new("RGB", (2047, 1500)))


def test_inpaint_check_catches_a_changed_pixel_outside_the_mask() -> None:
    source, truth = synthetic_product(512)
    out = source.copy()
    assert check_output(CASE["object_remove"], source, truth, out) == []
    out.putpixel((5, 5), (0, 0, 0))
    [problem] = check_output(CASE["object_remove"], source, truth, out)
    assert "1 pixels outside" in problem


def test_white_background_check() -> None:
    source, truth = synthetic_product(64)
    white = Image.new("RGB", (1000, 1000), (255, 255, 255))
    assert check_output(CASE["white_bg_ecomm"], source, truth, white) == []
    white.putpixel((3, 3), (254, 255, 255))
    assert check_output(CASE["white_bg_ecomm"], source, truth, white)


async def test_selftest_runs_the_pipeline_and_flags_random_weights(ctx) -> None:
    with output_sink() as (base_url, store):
        ctx.settings = ctx.settings.model_copy(update={"url_allowlist": ["127.0.0.0/8"]})
        problems = await run_cases(ctx, base_url, store)
    failed = {problem.split(":")[0] for problem in problems}
    # Random weights cannot segment; the deterministic checks must still pass.
    assert {"upscale_2k", "object_remove"}.isdisjoint(failed), problems
    assert failed & {"bg_remove", "jpeg_to_png", "cutout_subject"}, problems
    assert len(store) >= 4
