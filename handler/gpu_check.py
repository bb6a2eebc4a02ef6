"""Fail fast when the image starts without a usable GPU and driver."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class GpuReport:
    ok: bool
    message: str


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


def _driver_major(line: str) -> int | None:
    """'NVIDIA H200, 570.124.06, 143771 MiB' -> 570."""
    parts = [p.strip() for p in line.split(",")]
    try:
        return int(parts[1].split(".")[0])
    except (IndexError, ValueError):
        return None


def check_gpu(
    run: Runner = _run,
    which: Callable[[str], str | None] = shutil.which,
    *,
    min_driver: int = 0,
) -> GpuReport:
    """nvidia-smi must list a GPU whose driver is at least `min_driver` (major version)."""
    if which("nvidia-smi") is None:
        return GpuReport(
            False,
            "no NVIDIA driver: nvidia-smi is not on PATH. Start the container with a GPU "
            "(--gpus all / a Runpod GPU endpoint), or set REQUIRE_GPU=0 and "
            "COMFYUI_EXTRA_ARGS=--cpu to run on the CPU.",
        )
    try:
        proc = run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuReport(False, f"nvidia-smi failed to run: {type(exc).__name__}")
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        detail = " ".join((proc.stderr or proc.stdout).split())[:300]
        return GpuReport(
            False, f"nvidia-smi found no usable GPU (exit {proc.returncode}): {detail}"
        )
    majors = [_driver_major(line) for line in lines]
    if min_driver and any(m is None or m < min_driver for m in majors):
        return GpuReport(
            False,
            f"NVIDIA driver too old: {'; '.join(lines)}. This image's torch needs driver >= "
            f"{min_driver}; pick hosts with a newer CUDA version (Runpod: allowed CUDA versions).",
        )
    return GpuReport(True, "; ".join(lines))
