#!/usr/bin/env bash
# The demo in one command: create the environment (scripts/bootstrap.sh, which also puts the
# real u2netp into models/), then run the whole loop (scripts/demo.py) on one machine. The
# mask-based jobs run that real u2netp in every mode. Arguments pass through, for example:
#   bash scripts/demo.sh --double                 # test double + tiny models, no downloads
#   COMFYUI_DIR=~/ComfyUI MODELS_DIR=~/models bash scripts/demo.sh --types bg_remove
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
