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
ROW = re.compile(rf"^(\S.*?)\s+{NUMBER} /\s*{NUMBER}$")
ENCODER = re.compile(
    rf"^([\w-]+): {NUMBER} s \(p90 {NUMBER}\), {NUMBER} MiB, "
    rf"(baseline|{NUMBER}x (faster|slower), {NUMBER}x (larger|smaller))$"
)
STAGE_ROWS = (
    "download",
    "queue",
    "prompt_rest",
    "fetch_output",
    "encode",
    "upload",
    "callback",
    "other",
)


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with script_module("bench_handler") as module:
        yield module


@pytest.mark.torch
def test_quick_run_prints_a_table_and_encoder_lines_that_parse() -> None:
    pytest.importorskip("torch", reason="needs torch (the ComfyUI double's image nodes)")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--sizes", "64", "--encode-size", "256"],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("stage"))
    assert header.split()[1:] == ["64x64"]

    rows: dict[str, float] = {}
    for line in lines[lines.index(header) + 1 :]:
        match = ROW.match(line)
        if match is None:
            break
        median, p90 = float(match[2]), float(match[3])
        assert median == p90, "one repeat: the median is the p90"
        rows[match[1]] = median
    assert list(rows) == [*STAGE_ROWS, "OVERHEAD=wall-execute", "execute (excluded)", "wall"]
    assert all(rows[name] >= 0 for name in STAGE_ROWS if name != "other")
    assert rows["execute (excluded)"] > 0 and rows["upload"] > 0 and rows["callback"] > 0
    overhead = rows["OVERHEAD=wall-execute"]
    assert overhead == pytest.approx(rows["wall"] - rows["execute (excluded)"], abs=0.2)
    assert overhead == pytest.approx(sum(rows[name] for name in STAGE_ROWS), abs=0.5)

    encoders = {m[1]: m for line in lines if (m := ENCODER.match(line))}
    assert list(encoders) == ["fpng", "pillow-fast", "pillow", "webp-lossless", "jpeg-q92"]
    assert encoders["pillow"][5] == "baseline"
    assert all(float(encoders[name][4]) > 0 for name in ("fpng", "pillow-fast", "pillow"))
    default = Settings.model_fields["png_encoder"].default
    assert f"current default: png_encoder = {default} (handler/settings.py)" in lines
    [verdict] = [line for line in lines if line.startswith("supported default: ")]
    assert verdict.split()[2] in ("fpng", "pillow-fast", "pillow")


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
