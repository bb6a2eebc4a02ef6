"""Which scenes each mask-based type runs on, for the quality suite and the self-test.

One case is one job: its inputs are the scenes (same size, so one batch and one prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handler.quality.scenes import SCENES

# Every scene, the white one second so that a cut-down run still checks the halo.
_ALL = [
    "amber_bottle",
    "white_jar",
    *(name for name in SCENES if name not in ("amber_bottle", "white_jar")),
]
# A white subject on a white canvas has no visible box to measure: ecomm uses coloured ones.
_SHAPES = ["amber_bottle", "blue_mug", "white_jar", "glass_bottle"]
_COLOURED = ["red_box", "green_tube", "glass_bottle", "shadowed_can"]


@dataclass(frozen=True)
class QualityCase:
    job_type: str
    params: dict[str, Any]
    scenes: list[str] = field(default_factory=list)

    def with_segmenter(self, segmenter: str) -> QualityCase:
        return QualityCase(self.job_type, {**self.params, "segmenter": segmenter}, self.scenes)

    def first_scenes(self, count: int) -> QualityCase:
        return QualityCase(self.job_type, self.params, self.scenes[:count])


QUALITY_CASES: tuple[QualityCase, ...] = (
    QualityCase("bg_remove", {"halo": 2}, _ALL),
    QualityCase("jpeg_to_png", {"transparent": "subject"}, _SHAPES),
    QualityCase("cutout_subject", {"padding": 12, "padding_unit": "px"}, _SHAPES),
    QualityCase(
        "white_bg_ecomm", {"fill": 0.85, "canvas_width": 1000, "canvas_height": 1000}, _COLOURED
    ),
)


def cases_for(segmenter: str, *, scenes_per_case: int | None = None) -> list[QualityCase]:
    """Every case with `segmenter`, each cut to its first `scenes_per_case` scenes if given
    (the self-test runs BiRefNet on the CPU of a build machine: 1024² Swin-L is slow there)."""
    cases = [case.with_segmenter(segmenter) for case in QUALITY_CASES]
    if scenes_per_case is not None:
        cases = [case.first_scenes(scenes_per_case) for case in cases]
    return cases
