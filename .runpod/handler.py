"""Runpod Hub entry point: the worker lives in the `handler/` package (see handler/startup.py)."""

import sys
from pathlib import Path

# This file is itself named handler.py: put the repository root first so that
# `import handler` finds the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handler.startup import main

sys.exit(main())
