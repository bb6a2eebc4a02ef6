"""Build-time self-test entry (the Dockerfile runs this): see handler/selftest.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handler.selftest import main

sys.exit(main())
