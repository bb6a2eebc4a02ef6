"""Skips for missing services that CI can turn into failures.

CI sets SIMPLYPNG_REQUIRE_PG=1: there, a Postgres that cannot be reached fails the run instead of
quietly skipping the whole-suite-on-Postgres tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def postgres_missing(message: str) -> NoReturn:
    if os.environ.get("SIMPLYPNG_REQUIRE_PG") == "1":
        pytest.fail(f"{message} (SIMPLYPNG_REQUIRE_PG=1: these tests must run here)")
    pytest.skip(message)
