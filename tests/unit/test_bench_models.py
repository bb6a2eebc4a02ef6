"""scripts/bench_models.py: the workflows it runs, its ComfyUI emulation, and a small run whose
table parses (no timing asserts; the model-heavy types are left to `--quick` by hand)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest

from tests.fakes.scripts import script_module

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

pytestmark = pytest.mark.torch

ROW = re.compile(r"^(\S+)\s+(\d+)x(\d+)\s+(\d+)\s+(\d+\.\d)\s+(\d+\.\d)\s*(.*)$")


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with script_module("bench_models") as module:
        yield module


def test_a_small_run_prints_every_case_and_the_ratios(bench, capsys):
    argv = ["--quick", "--sizes", "32,64", "--types", "bg_remove,jpeg_to_png", "--runs", "2"]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [m.groups() for m in map(ROW.match, lines) if m]
    cases = [(case, int(size)) for case, size, _, _, _, _, _ in rows]
    assert cases == [
        (case, size)
        for case in ("bg_remove", "jpeg_to_png[none]", "jpeg_to_png[color]", "jpeg_to_png[subject]")
        for size in (32, 64)
    ]
    for case, _, _, runs, median, fastest, note in rows:
        assert runs == "2" and float(fastest) <= float(median)
        assert (note == "ops only") == (case in {"bg_remove", "jpeg_to_png[subject]"})
    ratios = [line for line in lines if line.startswith("ratio ")]
    assert len(ratios) == 4 and all(" 64x64 / 32x32: " in line for line in ratios)
    assert any(line.startswith("segmenter: skipped") for line in lines)
    assert any(line.startswith("device: cpu") or "cuda" in line for line in lines)


def test_the_prompts_are_the_handlers_for_each_case(bench):
    bindings = bench.load_registry(bench.REPO_ROOT / "workflows", bench.TYPES)
    job_type, params = bench.case_params("object_remove", 1024, 2048)
    graph = bench.prompt_for(bindings[job_type], params)
    assert "Mask Image" not in {node["_meta"]["title"] for node in graph.values()}
    (removal,) = [n for n in graph.values() if n["class_type"] == "SimplyPNGRemovalMask"]
    (region,) = json.loads(removal["inputs"]["regions"])
    assert (region["x"], region["y"], region["w"], region["h"]) == (384, 384, 256, 256)
    job_type, params = bench.case_params("jpeg_to_png[color]", 64, 2048)
    graph = bench.prompt_for(bindings[job_type], params)
    assert {n["class_type"] for n in graph.values()} >= {"SimplyPNGColourKey"}
    job_type, params = bench.case_params("upscale_2k", 512, 2048)
    graph = bench.prompt_for(bindings[job_type], params)
    (resize,) = [n for n in graph.values() if n["class_type"] == "SimplyPNGUpscaleToLongEdge"]
    assert resize["inputs"]["target"] == 2048
    assert bench.cases(["upscale_2k", "jpeg_to_png"]) == [
        "upscale_2k",
        "jpeg_to_png[none]",
        "jpeg_to_png[color]",
        "jpeg_to_png[subject]",
    ]


class NearestX4(torch.nn.Module):
    """A pointwise 4x upscaler: tiles must reassemble into exactly the whole-image result."""

    scale = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape[-2:]))
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest") * 2.0


def test_tiled_upscale_covers_the_image_in_comfyuis_tiles(bench):
    image = torch.from_numpy(np.random.default_rng(0).random((1, 1000, 600, 3), np.float32))
    model = NearestX4()
    out = bench.upscale_with_model(model, image, torch.device("cpu"))
    whole = torch.clamp(
        torch.nn.functional.interpolate(image.movedim(-1, 1), scale_factor=4) * 2.0, 0, 1
    ).movedim(1, -1)
    assert out.shape == (1, 4000, 2400, 3) and torch.equal(out, whole)
    # tiles start every 480 px (512 - 32 overlap): rows 0, 480, 960; columns 0, 480
    assert model.calls == [(512, 512), (512, 120)] * 2 + [(40, 512), (40, 120)]
    small = NearestX4()
    bench.upscale_with_model(small, image[:, :512, :300], torch.device("cpu"))
    assert small.calls == [(512, 300)]


def test_the_fixed_subject_segmenter_runs_the_model_it_wraps(bench):
    class Counting:
        model, device, dtype = torch.nn.Identity(), torch.device("cpu"), torch.float32
        calls = 0

        def predict(self, images):
            Counting.calls += 1
            return np.zeros(images.shape[:3], np.float32)

    bench.import_pack(bench.pack_parent(None))
    segmenter = bench.fixed_subject_segmenter(Counting())
    masks = segmenter.predict(np.zeros((2, 40, 30, 3), np.float32))
    assert Counting.calls == 1 and masks.shape == (2, 40, 30)
    assert masks[0, 20, 15] == 1.0 and masks[0, 0, 0] == 0.0
