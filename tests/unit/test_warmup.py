"""Which warm-up prompts the worker runs: each type once, and every served segmenter loaded."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from handler.settings import ALL_TYPES, REPO_ROOT, Settings
from handler.warmup import warmup_runs
from handler.workflows import load_registry

REGISTRY = load_registry(REPO_ROOT / "workflows", ALL_TYPES)


def test_each_type_once_and_the_second_segmenter_once_more() -> None:
    runs = warmup_runs(REGISTRY, ["birefnet", "u2netp"])
    assert [job_type for job_type, _ in runs] == [
        "bg_remove",
        "bg_remove",
        *[t for t in ALL_TYPES if t != "bg_remove"],
    ]
    segmenters = [params.get("segmenter") for _, params in runs]
    assert segmenters.count("u2netp") == 1
    assert {s for s in segmenters if s} == {"birefnet", "u2netp"}
    object_remove = next(params for job_type, params in runs if job_type == "object_remove")
    assert object_remove["regions"] and "segmenter" not in object_remove


def test_a_lite_worker_warms_only_u2netp() -> None:
    runs = warmup_runs(REGISTRY, ["u2netp"])
    assert len(runs) == len(ALL_TYPES)
    assert {params.get("segmenter") for _, params in runs} == {"u2netp", None}


def test_segmenters_setting_is_parsed_and_checked() -> None:
    assert Settings.from_env({}).segmenters == ["birefnet", "u2netp"]
    assert Settings.from_env({"SEGMENTERS": "u2netp, u2netp"}).segmenters == ["u2netp"]
    for bad in (",", "birefnet,sam"):
        with pytest.raises(ValidationError, match="segmenters"):
            Settings.from_env({"SEGMENTERS": bad})
