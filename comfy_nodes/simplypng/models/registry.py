"""Process-wide model cache: nodes call get_segmenter() / get_inpainter().

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
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import torch_device
from .inpainter import Inpainter, load_inpainter
from .location import default_lock_path, default_models_dir, verify_sha256_default
from .segmenter import Segmenter, load_segmenter

__all__ = [
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


_lock = threading.RLock()
_config = _Config()
_segmenter: Segmenter | None = None
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
    global _segmenter, _inpainter
    with _lock:
        _segmenter = None
        _inpainter = None


def use(*, segmenter: Segmenter | None = None, inpainter: Inpainter | None = None) -> None:
    """Serve models built elsewhere (scripts/bench_models.py builds random-weight ones).

    None leaves that model as it is; configure() and reset_cache() forget them.
    """
    global _segmenter, _inpainter
    with _lock:
        if segmenter is not None:
            _segmenter = segmenter
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


def get_segmenter() -> Segmenter:
    """The BiRefNet segmenter, loaded once per process."""
    global _segmenter
    with _lock:
        if _segmenter is None:
            _segmenter = load_segmenter(*_resolved())
        return _segmenter


def get_inpainter() -> Inpainter:
    """The big-LaMa inpainter, loaded once per process."""
    global _inpainter
    with _lock:
        if _inpainter is None:
            _inpainter = load_inpainter(*_resolved())
        return _inpainter
