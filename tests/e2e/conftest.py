"""Fixtures for the full loop with the real worker: one worker stack per session (moto, the
ComfyUI double process, `python -m handler --rp_serve_api`), a fresh Postgres schema and a
fresh control plane per test.

Postgres is SIMPLYPNG_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test); when it
cannot be reached, the tests that need it are skipped with a message naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.full_stack import (
    FullLoop,
    PostgresUnavailable,
    RealWorker,
    StartError,
    postgres_schema,
    real_worker,
    start_full_loop,
)
from tests.fakes.services import postgres_missing


@pytest.fixture(scope="session")
def worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealWorker]:
    try:
        with real_worker(tmp_path_factory.mktemp("real-worker")) as stack:
            yield stack
    except StartError as exc:
        pytest.fail(f"the worker stack did not start: {exc}")


@pytest.fixture(scope="session")
def pg_reachable() -> None:
    """Skip (before the worker stack starts) when Postgres cannot be reached."""
    try:
        with postgres_schema():
            pass
    except PostgresUnavailable as exc:
        postgres_missing(str(exc))


@pytest.fixture
def pg_url(pg_reachable: None) -> Iterator[str]:
    """A fresh Postgres schema for this test (so the audit sees only its jobs)."""
    try:
        with postgres_schema() as url:
            yield url
    except PostgresUnavailable as exc:
        postgres_missing(str(exc))


@pytest.fixture
def full_loop(
    pg_url: str, worker_stack: RealWorker, tmp_path: Path
) -> Iterator[Callable[..., FullLoop]]:
    """`full_loop(**options)` starts the control plane against the session's worker (see
    start_full_loop); everything started is stopped, and the double's faults cleared, after."""
    started: list[FullLoop] = []

    def start(**options: Any) -> FullLoop:
        loop = start_full_loop(
            worker_stack, database_url=pg_url, storage_dir=tmp_path / "storage", **options
        )
        started.append(loop)
        return loop

    yield start
    for loop in started:
        loop.stop()
    worker_stack.double.clear_faults()
