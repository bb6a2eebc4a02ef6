"""The node pack's reader of models.lock: which files a model needs, and are they intact.

The worker has its own reader (handler/models_lock.py); this one is separate because the node
pack runs inside ComfyUI's process, where the worker package is not importable. It reads only
the fields loading needs and leaves validating the whole lock to the worker's reader and tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ModelFileError

FETCH_HINT = "run scripts/fetch_models.py --dest <ComfyUI models dir>"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    name: str
    role: str
    dest: str
    size: int
    sha256: str | None


def read_model_files(lock_path: Path, model: str) -> list[ModelFile]:
    """The lock's entries for `model`; raises ModelFileError if it has none."""
    try:
        data = json.loads(Path(lock_path).read_text(encoding="utf-8"))
        files = [
            ModelFile(raw["name"], raw["role"], raw["dest"], int(raw["size"]), raw.get("sha256"))
            for raw in data["models"]
            if raw.get("model") == model
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"cannot read {lock_path}: {exc}") from exc
    if not files:
        raise ModelFileError(f"model {model!r} is not listed in {lock_path}")
    for file in files:
        dest = PurePosixPath(file.dest)
        if dest.is_absolute() or ".." in dest.parts:
            raise ModelFileError(f"{file.name}: dest {file.dest!r} leaves the models folder")
    return files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_files(models_dir: Path, files: list[ModelFile], verify_sha256: bool) -> dict[str, Path]:
    """Map each file's name to its path under `models_dir`, after checking it.

    Size is always checked. The sha256 of weights is checked only when `verify_sha256` is set
    (hashing 450 MB at every start costs seconds); code is hashed when it is read, by
    `read_verified`. An entry without a sha256 is refused: nothing unpinned is loaded.
    """
    paths: dict[str, Path] = {}
    for file in files:
        path = models_dir / file.dest
        if file.sha256 is None:
            raise ModelFileError(f"{file.name} has no sha256 in models.lock; refusing to load it")
        if not path.is_file():
            raise ModelFileError(f"{file.name} is missing at {path} ({FETCH_HINT})")
        size = path.stat().st_size
        if size != file.size:
            raise ModelFileError(
                f"{file.name} at {path} is {size} bytes, models.lock says {file.size} "
                f"({FETCH_HINT})"
            )
        if verify_sha256 and file.role != "code" and sha256_file(path) != file.sha256:
            raise ModelFileError(f"{file.name} at {path} does not match its sha256 in models.lock")
        paths[file.name] = path
    return paths


def read_verified(path: Path, file: ModelFile) -> bytes:
    """The bytes of a small file, checked against its sha256 (always: it may be code we run)."""
    data = path.read_bytes()
    if sha256_bytes(data) != file.sha256:
        raise ModelFileError(f"{file.name} at {path} does not match its sha256 in models.lock")
    return data
