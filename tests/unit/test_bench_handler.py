"""scripts/bench_handler.py: a tiny end-to-end run whose printed table parses, and its pure
helpers (no timing asserts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from handler.settings import Settings
from tests.fakes.scripts import script_module

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_handler.py"
NUMBER = r"(-?\d+\.\d+)"
ENCODER = re.compile(
    rf"^([\w-]+): {NUMBER} s \(p90 {NUMBER}\), {NUMBER} MiB, "
    rf"(baseline|{NUMBER}x (faster|slower), {NUMBER}x (larger|smaller))$"
)
STAGE_ROWS = (
    "download",
    "queue",
    "execute",
    "prompt_rest",
    "collect",
    "encode",
    "upload",
    "callback",
    "other",
)
CASE = re.compile(rf"^\((a|b|c)\) .*?\s+{NUMBER} /\s*{NUMBER}$")
SPLIT = re.compile(rf"^(\w+)\s+{NUMBER} /\s*{NUMBER}\s+{NUMBER} /\s*{NUMBER}$")


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with script_module("bench_handler") as module:
        yield module


@pytest.mark.torch
def test_quick_run_prints_the_side_by_side_table_and_encoder_lines_that_parse() -> None:
    pytest.importorskip("torch", reason="needs torch (the ComfyUI double's image nodes)")
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_URL", "COMFYUI_DIR")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--encode-size", "256"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Side by side on the ComfyUI test double (NOT ComfyUI")
    cases = {m[1]: float(m[2]) for line in lines if (m := CASE.match(line))}
    assert set(cases) == {"a", "b", "c"} and all(v > 0 for v in cases.values())
    [ratio] = [line for line in lines if line.startswith("ratio (b)/(a): ")]
    assert float(ratio.split()[2]) == pytest.approx(cases["b"] / cases["a"], abs=0.01)

    split = {m[1]: (float(m[2]), float(m[4])) for line in lines if (m := SPLIT.match(line))}
    assert list(split) == [*STAGE_ROWS, "wall"]
    for column, case in ((0, "b"), (1, "c")):
        wall = split["wall"][column]
        assert wall == pytest.approx(cases[case], abs=0.2)
        assert sum(split[name][column] for name in STAGE_ROWS) == pytest.approx(wall, abs=0.5)
        assert split["upload"][column] > 0 and split["callback"][column] > 0

    assert any(
        line == "hand-over format: .npy is the faster"
        or line == "hand-over format: PNG level 0 is the faster"
        for line in lines
    )
    [encode] = [line for line in lines if line.startswith("ratio sanitize+encode / fpng: ")]
    assert float(encode.split()[4]) > 0

    encoders = {m[1]: m for line in lines if (m := ENCODER.match(line))}
    assert list(encoders) == ["fpng", "pillow-fast", "pillow", "webp-lossless", "jpeg-q92"]
    assert encoders["pillow"][5] == "baseline"
    default = Settings.model_fields["png_encoder"].default
    assert f"current default: png_encoder = {default} (handler/settings.py)" in lines


def test_recommended_is_the_fastest_png_within_the_size_limit(bench: ModuleType) -> None:
    results = {
        "fpng": ([0.05, 0.06], 140),
        "pillow-fast": ([0.3, 0.3], 120),
        "pillow": ([0.9, 1.0], 100),
        "webp-lossless": ([0.01], 10),  # not a PNG option: never recommended
    }
    assert bench.recommended(results, 1.5) == "fpng"
    assert bench.recommended(results, 1.25) == "pillow-fast"
    assert bench.recommended(results, 1.0) == "pillow"


def test_cutout_is_deterministic_with_clean_transparent_regions(bench: ModuleType) -> None:
    first, second = bench.cutout_rgba(96), bench.cutout_rgba(96)
    pixels = np.asarray(first)
    assert first.mode == "RGBA" and first.size == (96, 96)
    assert np.array_equal(pixels, np.asarray(second))
    clear = pixels[..., 3] == 0
    assert 0.3 < clear.mean() < 0.7
    assert (pixels[clear, :3] == 0).all()
    assert (pixels[..., 3] == 255).mean() > 0.3  # an opaque subject
    assert np.asarray(first)[~clear, :3].std() > 10  # textured, not flat


def test_parse_sizes_accepts_sides_and_square_sizes_only(bench: ModuleType) -> None:
    assert bench.parse_sizes("1024, 2048x2048") == [1024, 2048]
    with pytest.raises(Exception, match="square"):
        bench.parse_sizes("1024x768")
    with pytest.raises(Exception, match="range"):
        bench.parse_sizes("8")
