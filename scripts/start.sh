#!/usr/bin/env bash
# Container entry point (the image's CMD). All start-up logic lives in Python
# (handler/startup.py); extra arguments, such as runpod's --rp_serve_api flags, pass through.
set -euo pipefail
# Container start time, so the worker can log its cold start from the very beginning.
export BOOT_EPOCH="${BOOT_EPOCH:-$(date +%s.%N)}"
exec python -m handler.startup "$@"
