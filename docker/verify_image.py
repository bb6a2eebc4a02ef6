"""Build-time checks of the image's Python environment; exits non-zero naming each failure.

- Forbidden modules must not be importable. ComfyUI's UpscaleModelLoader registers
  `spandrel_extra_arches` whenever it imports, and those architectures are non-commercial.
- torch must be the pinned release, built for the CUDA line of the base image (a wheel for
  another CUDA line would load but fail on the host driver, or pull a second CUDA runtime).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence


def importable_forbidden(modules: Iterable[str]) -> list[str]:
    """The names in `modules` that the current interpreter could import."""
    return [name for name in modules if importlib.util.find_spec(name) is not None]


def torch_problems(torch_version: str, cuda: str) -> list[str]:
    """Differences between the installed torch and the pins (release, CUDA major.minor)."""
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        return [f"torch does not import: {exc}"]
    problems = []
    release = torch.__version__.split("+", 1)[0]
    if release != torch_version:
        problems.append(f"torch is {torch.__version__}, pinned {torch_version}")
    built_for = torch.version.cuda
    if built_for is None:
        problems.append(f"torch {torch.__version__} is a CPU-only build, expected CUDA {cuda}")
    elif ".".join(built_for.split(".")[:2]) != cuda:
        problems.append(f"torch is built for CUDA {built_for}, the base image has CUDA {cuda}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forbid", action="append", default=[], help="module that must be absent")
    parser.add_argument("--torch", dest="torch_version", help="pinned torch release, e.g. 2.14.1")
    parser.add_argument("--cuda", help="CUDA major.minor of the base image, e.g. 13.0")
    args = parser.parse_args(argv)
    problems = [
        f"{name} is installed and must not be" for name in importable_forbidden(args.forbid)
    ]
    if args.torch_version or args.cuda:
        if not (args.torch_version and args.cuda):
            parser.error("--torch and --cuda go together")
        problems += torch_problems(args.torch_version, args.cuda)
    for line in problems:
        print(f"image check: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
