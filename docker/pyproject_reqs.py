"""Print the project's requirements (base dependencies plus chosen extras) from pyproject.toml.

The image build installs these in a layer of their own, before the project's source is
copied in, so editing the source does not reinstall torch.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def requirements(pyproject: dict[str, Any], extras: Sequence[str]) -> list[str]:
    """Base dependencies followed by each extra's, in order; unknown extras raise KeyError."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise KeyError(f"unknown extras {unknown}; known: {sorted(optional)}")
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs.extend(optional[extra])
    return reqs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("extras", nargs="*")
    args = parser.parse_args(argv)
    try:
        reqs = requirements(tomllib.loads(args.pyproject.read_text("utf-8")), args.extras)
    except KeyError as exc:
        print(f"{args.pyproject}: {exc.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
