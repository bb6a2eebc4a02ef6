"""Process-wide model cache: nodes call get_segmenter(name) / get_inpainter().

Segmenters are named as jobs name them (SEGMENTERS): "birefnet" (the default) and "u2netp".

Each model loads on first use and stays loaded between prompts. A failed load is not cached,
so the next prompt retries (e.g. after the files were fetched). Tests point the registry at
tiny models with configure(models_dir=..., lock_path=...).

Where files are looked for, unless configure() says otherwise:
  models folder  ComfyUI's folder_paths.models_dir inside ComfyUI, else $SIMPLYPNG_MODELS_DIR
  models.lock    $SIMPLYPNG_MODELS_LOCK, else beside the node pack, else at the repository root
  sha256 check   of weights when $SIMPLYPNG_VERIFY_SHA256=1 (sizes and code are always checked)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import torch_device
from .inpainter import Inpainter, load_inpainter
from .location import default_lock_path, default_models_dir, verify_sha256_default
from .segmenter import Segmenter, load_segmenter
from .u2netp import load_u2netp

__all__ = [
    "DEFAULT_SEGMENTER",
    "SEGMENTERS",
    "Inpainter",
    "Segmenter",
    "configure",
    "get_inpainter",
    "get_segmenter",
    "reset_cache",
    "use",
]


@dataclass(frozen=True)
class _Config:
    models_dir: Path | None = None
    lock_path: Path | None = None
    verify_sha256: bool | None = None
    device: torch.device | None = None


SegmenterLoader = Callable[[Path, Path, bool, torch.device], Segmenter]
# The job-facing names of the segmentation models, and their loaders.
SEGMENTERS: dict[str, SegmenterLoader] = {"birefnet": load_segmenter, "u2netp": load_u2netp}
DEFAULT_SEGMENTER = "birefnet"

_lock = threading.RLock()
_config = _Config()
_segmenters: dict[str, Segmenter] = {}
_inpainter: Inpainter | None = None


def configure(
    *,
    models_dir: Path | str | None = None,
    lock_path: Path | str | None = None,
    verify_sha256: bool | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Override where models come from (None = the default); drops loaded models."""
    global _config
    with _lock:
        _config = _Config(
            models_dir=Path(models_dir) if models_dir is not None else None,
            lock_path=Path(lock_path) if lock_path is not None else None,
            verify_sha256=verify_sha256,
            device=torch.device(device) if device is not None else None,
        )
        reset_cache()


def reset_cache() -> None:
    """Forget loaded models; the next get_* call loads them again."""
    global _inpainter
    with _lock:
        _segmenters.clear()
        _inpainter = None


def use(
    *,
    segmenter: Segmenter | None = None,
    inpainter: Inpainter | None = None,
    segmenter_name: str = DEFAULT_SEGMENTER,
) -> None:
    """Serve models built elsewhere (scripts/bench_models.py builds random-weight ones).

    None leaves that model as it is; configure() and reset_cache() forget them.
    """
    global _inpainter
    with _lock:
        if segmenter is not None:
            _segmenters[_known(segmenter_name)] = segmenter
        if inpainter is not None:
            _inpainter = inpainter


def _resolved() -> tuple[Path, Path, bool, torch.device]:
    config = _config
    return (
        config.models_dir or default_models_dir(),
        config.lock_path or default_lock_path(),
        verify_sha256_default() if config.verify_sha256 is None else config.verify_sha256,
        config.device or torch_device(),
    )


def _known(name: str) -> str:
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r} (known: {', '.join(SEGMENTERS)})")
    return name


def get_segmenter(name: str = DEFAULT_SEGMENTER) -> Segmenter:
    """The named segmenter, loaded once per process."""
    with _lock:
        if name not in _segmenters:
            _segmenters[name] = SEGMENTERS[_known(name)](*_resolved())
        return _segmenters[name]


def get_inpainter() -> Inpainter:
    """The big-LaMa inpainter, loaded once per process."""
    global _inpainter
    with _lock:
        if _inpainter is None:
            _inpainter = load_inpainter(*_resolved())
        return _inpainter
