#!/usr/bin/env bash
# The test command: lint, then the whole suite. Postgres tests use SIMPLYPNG_TEST_PG_DSN.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export SIMPLYPNG_TEST_PG_DSN=${SIMPLYPNG_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/test}
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p handler -p api_stub -p simplypng
.venv/bin/mypy scripts docker tests/fakes
exec .venv/bin/pytest -q -rs "$@"
