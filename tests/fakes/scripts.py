"""Import a file run by path (under scripts/ or docker/) as a module, for tests of it.

Such files are not in a package: the image build and developers run them by path. Dataclasses
look their module up in sys.modules, so the module is registered there under `name`.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def load_file(path: Path, name: str) -> ModuleType:
    """The file at `path` imported as module `name` (left in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def script_module(name: str) -> Iterator[ModuleType]:
    """scripts/<name>.py imported as module `name`, for the duration of the block."""
    try:
        yield load_file(SCRIPTS / f"{name}.py", name)
    finally:
        sys.modules.pop(name, None)


def fetch_models_alone(folder: Path) -> Path:
    """scripts/fetch_models.py with only handler/models_lock.py beside it, as the image's bare
    fetcher stage has them; returns the script's path (run it with `python -S -I`)."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "handler").mkdir()
    (folder / "handler" / "__init__.py").write_text("", encoding="utf-8")
    shutil.copy(REPO / "handler" / "models_lock.py", folder / "handler" / "models_lock.py")
    return Path(shutil.copy(SCRIPTS / "fetch_models.py", folder / "scripts"))
