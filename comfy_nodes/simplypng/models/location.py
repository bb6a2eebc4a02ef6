"""Where the models folder and models.lock are, when tests have not said otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelFileError

# The node pack runs inside ComfyUI's process, with no worker settings object: these are the
# only environment variables it reads.
ENV_MODELS_DIR = "SIMPLYPNG_MODELS_DIR"
ENV_MODELS_LOCK = "SIMPLYPNG_MODELS_LOCK"
ENV_VERIFY_SHA256 = "SIMPLYPNG_VERIFY_SHA256"

_PACK_DIR = Path(__file__).resolve().parent.parent
# models.lock beside the pack (an image that copies the pack into custom_nodes/ copies the
# lock with it), else at the repository root (a checkout, or a symlinked pack).
LOCK_CANDIDATES = (_PACK_DIR / "models.lock", _PACK_DIR.parent.parent / "models.lock")


def default_models_dir() -> Path:
    """ComfyUI's models folder inside ComfyUI, else $SIMPLYPNG_MODELS_DIR."""
    try:
        import folder_paths  # ComfyUI's module; importable only inside its process
    except ImportError:
        folder_paths = None
    if folder_paths is not None:
        return Path(folder_paths.models_dir)
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env)
    raise ModelFileError(
        f"no models folder: not running inside ComfyUI and {ENV_MODELS_DIR} is not set"
    )


def default_lock_path() -> Path:
    """$SIMPLYPNG_MODELS_LOCK, else models.lock beside the pack or at the repository root."""
    env = os.environ.get(ENV_MODELS_LOCK)
    if env:
        if not Path(env).is_file():
            raise ModelFileError(f"{ENV_MODELS_LOCK}={env} is not a file")
        return Path(env)
    for candidate in LOCK_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        "models.lock not found (looked in " + ", ".join(str(c) for c in LOCK_CANDIDATES) + ")"
    )


def verify_sha256_default() -> bool:
    """Hash weights at load when SIMPLYPNG_VERIFY_SHA256=1 (sizes are always checked)."""
    return os.environ.get(ENV_VERIFY_SHA256, "") == "1"
