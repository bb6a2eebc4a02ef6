"""`python -m handler`: start the worker through runpod's SDK (see handler.startup)."""

import sys

from handler.startup import main

sys.exit(main())
