"""Third-party imports of the pinned BiRefNet code, and checks that they resolve.

The loader executes the snapshot's code (birefnet.py, which bundles BiRefNet's config,
backbones and decoder blocks into one file, and BiRefNet_config.py) from its checksummed
bytes, so every package it imports must already be installed; the `nodes` extra installs
them. EXPECTED_IMPORTS records them as public copies and reviews of revision e2bf8e44 report
them; this repository holds no copy of that code. The image build parses the real files
(`python -m simplypng.models.snapshot_deps --lock ... --models-dir ...`) and fails when they
import a package missing from this list or anything the environment cannot provide.

Standard library only: the loader checks imports before it runs any snapshot code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ModelFileError
from .lockfile import read_model_files

MODEL_NAME = "birefnet-general"

# module -> names the snapshot code takes from it ("from module import name").
EXPECTED_IMPORTS: dict[str, tuple[str, ...]] = {
    "einops": ("rearrange",),
    "kornia.filters": ("laplacian",),
    "numpy": (),
    "timm.models.layers": ("DropPath", "to_2tuple", "trunc_normal_"),
    "timm.models.registry": ("register_model",),
    "torch": (),
    "torch.nn": (),
    "torch.nn.functional": (),
    "torch.utils.checkpoint": (),
    "torchvision.models": (
        "vgg16",
        "vgg16_bn",
        "VGG16_Weights",
        "VGG16_BN_Weights",
        "resnet50",
        "ResNet50_Weights",
    ),
    "torchvision.ops": ("deform_conv2d",),
    "transformers": ("PreTrainedModel", "PretrainedConfig"),
}
EXPECTED_PACKAGES = frozenset(module.split(".")[0] for module in EXPECTED_IMPORTS)

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}

Imports = dict[str, set[str]]


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    if caught is None:
        return True
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return any(isinstance(name, ast.Name) and name.id in _IMPORT_ERRORS for name in names)


class _Collector(ast.NodeVisitor):
    """Absolute imports a module needs; those in `try: ... except ImportError` are optional."""

    def __init__(self) -> None:
        self.imports: Imports = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.setdefault(alias.name, set())

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # relative imports are the snapshot's own files
            self.imports.setdefault(node.module, set()).update(a.name for a in node.names)

    def visit_Try(self, node: ast.Try) -> None:
        if any(_catches_import_error(handler) for handler in node.handlers):
            for statement in [*node.handlers, *node.orelse, *node.finalbody]:
                self.visit(statement)
        else:
            self.generic_visit(node)


def code_imports(source: bytes | str, filename: str = "<snapshot>") -> Imports:
    """Third-party modules `source` imports (standard library left out), with the names."""
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError) as exc:
        raise ModelFileError(f"cannot parse {filename}: {exc}") from None
    collector = _Collector()
    collector.visit(tree)
    return {
        module: names
        for module, names in collector.imports.items()
        if module.split(".")[0] not in sys.stdlib_module_names and module != "__future__"
    }


def missing_packages(imports: Mapping[str, set[str]]) -> list[str]:
    """Top-level packages of `imports` that are not installed (found without importing)."""
    packages = {module.split(".")[0] for module in imports}
    return sorted(p for p in packages if importlib.util.find_spec(p) is None)


def undeclared_packages(imports: Mapping[str, set[str]]) -> list[str]:
    """Top-level packages of `imports` that EXPECTED_IMPORTS does not list."""
    return sorted({module.split(".")[0] for module in imports} - EXPECTED_PACKAGES)


def unresolved(imports: Mapping[str, set[str]]) -> list[str]:
    """Every module and name of `imports` that does not import here, one line each."""
    problems = []
    for module, names in sorted(imports.items()):
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            problems.append(f"{module}: {exc}")
            continue
        for name in sorted(names):
            if name == "*" or hasattr(loaded, name):
                continue
            try:  # `from package import submodule`
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                problems.append(f"{module}: has no {name!r}")
    return problems


def check_files(paths: Sequence[Path]) -> list[str]:
    """Problems with the imports of the snapshot files at `paths` (empty when all is well)."""
    problems = []
    for path in paths:
        imports = code_imports(path.read_bytes(), str(path))
        problems += [
            f"{path}: imports {package!r}, which EXPECTED_IMPORTS does not list"
            for package in undeclared_packages(imports)
        ]
        problems += [f"{path}: {line}" for line in unresolved(imports)]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, required=True, help="models.lock")
    parser.add_argument("--models-dir", type=Path, required=True, help="ComfyUI models folder")
    args = parser.parse_args(argv)
    try:
        code = [f for f in read_model_files(args.lock, MODEL_NAME) if f.role == "code"]
    except ModelFileError as exc:
        print(f"snapshot imports: {exc}", file=sys.stderr)
        return 1
    paths = [args.models_dir / f.dest for f in code]
    present = [p for p in paths if p.is_file()]
    if not present:
        print(f"snapshot imports: {MODEL_NAME} is not in this models folder; nothing to check")
        return 0
    problems = [f"{p}: missing" for p in paths if not p.is_file()] + check_files(present)
    for line in problems:
        print(f"snapshot imports: {line}", file=sys.stderr)
    if not problems:
        print(f"snapshot imports: {MODEL_NAME} code imports resolve ({len(present)} files)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
