"""The build-time self-test: its checks catch wrong outputs, and it runs through the pipeline
with the quality suite's own cases and thresholds."""

from __future__ import annotations

import numpy as np
from PIL import Image

from handler.quality.cases import QUALITY_CASES
from handler.quality.scenes import SCENES
from handler.selftest import (
    BIREFNET_SCENES_PER_CASE,
    PLAIN_CASES,
    Case,
    check_case,
    output_sink,
    run_cases,
    selftest_cases,
)
from tests.fakes.real_models import require_u2netp

PLAIN = {case.job_type: case for case in PLAIN_CASES}


def rgba_from_mask(mask: np.ndarray) -> Image.Image:
    pixels = np.zeros((*mask.shape, 4), np.uint8)
    pixels[..., 3] = mask * 255
    return Image.fromarray(pixels, "RGBA")


def test_cases_are_the_quality_suites_for_each_served_segmenter() -> None:
    cases = selftest_cases(["u2netp", "birefnet"])
    quality = [c for c in cases if c not in PLAIN_CASES]
    assert [c.job_type for c in quality] == [c.job_type for c in QUALITY_CASES] * 2
    lite = [c for c in quality if c.params["segmenter"] == "u2netp"]
    assert [list(c.scenes) for c in lite] == [c.scenes for c in QUALITY_CASES]
    heavy = [c for c in quality if c.params["segmenter"] == "birefnet"]
    assert all(len(c.scenes) == BIREFNET_SCENES_PER_CASE for c in heavy)
    assert "white_jar" in heavy[0].scenes  # the halo check runs on BiRefNet too


def test_mask_check_uses_the_quality_thresholds() -> None:
    case = Case("bg_remove", {"halo": 2, "segmenter": "u2netp"}, ("amber_bottle",))
    truth = SCENES["amber_bottle"]().mask
    assert check_case(case, [rgba_from_mask(truth)]) == []
    [problem] = check_case(case, [rgba_from_mask(np.roll(truth, 20, axis=1))])
    assert "IoU" in problem


def test_a_missing_output_is_a_problem() -> None:
    case = Case("bg_remove", {"halo": 2}, ("amber_bottle", "red_box"))
    assert check_case(case, [rgba_from_mask(SCENES["amber_bottle"]().mask)]) == [
        "bg_remove: 1 outputs for 2 inputs"
    ]


def test_upscale_check_wants_exact_long_edge() -> None:
    case = PLAIN["upscale_2k"]
    assert check_case(case, [Image.new("RGB", (2048, 1536))]) == []
    assert check_case(case, [Image.new("RGB", (2047, 1500))])


def test_inpaint_check_catches_a_changed_pixel_outside_the_mask() -> None:
    case = PLAIN["object_remove"]
    out = SCENES["amber_bottle"]().image.copy()
    assert check_case(case, [out]) == []
    out.putpixel((5, 5), (0, 0, 0))
    [problem] = check_case(case, [out])
    assert "1 pixels outside" in problem


async def test_selftest_passes_with_the_real_u2netp_and_flags_random_weights(ctx) -> None:
    require_u2netp()
    cases = selftest_cases(["u2netp", "birefnet"])
    with output_sink() as (base_url, store):
        ctx.settings = ctx.settings.model_copy(update={"url_allowlist": ["127.0.0.0/8"]})
        problems = await run_cases(ctx, base_url, store, cases)
    failed = {problem.split(":")[0] for problem in problems}
    # The real u2netp and the deterministic checks pass; BiRefNet's random-weight stand-in
    # cannot segment, and the self-test says so (as it would for a broken model or loader).
    assert not {f for f in failed if "(u2netp)" in f or "(-)" in f}, problems
    assert {f for f in failed if "(birefnet)" in f}, problems
    served = [c for c in cases if c.params.get("segmenter") != "birefnet"]
    assert len(store) >= sum(len(c.scenes) for c in served)
