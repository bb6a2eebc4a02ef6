"""scripts/loadtest.py through the full loop with the REAL worker (`--stack real-worker`):
10 concurrent users, on Postgres when SIMPLYPNG_TEST_PG_DSN is reachable, else on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.settings import REPO_ROOT
from tests.fakes.full_stack import PostgresUnavailable, postgres_schema

pytestmark = pytest.mark.torch

USERS = 10
JOBS_PER_USER = 2


@pytest.fixture
def load_database(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, url): a fresh Postgres schema, or SQLite when Postgres is unreachable."""
    try:
        with postgres_schema() as url:
            yield "postgres", url
    except PostgresUnavailable as exc:
        print(f"loadtest on SQLite: {exc}")
        yield "sqlite", f"sqlite:///{tmp_path / 'load.db'}"


def test_ten_users_through_the_real_worker_all_succeed_and_the_books_balance(
    load_database: tuple[str, str],
) -> None:
    kind, url = load_database
    print(f"loadtest database: {kind}")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "loadtest.py"),
            "--stack",
            "real-worker",
            "--type",
            "bg_remove",
            "--users",
            str(USERS),
            "--jobs-per-user",
            str(JOBS_PER_USER),
            "--timeout-s",
            "120",
            "--database-url",
            url,
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    summary = json.loads(done.stdout)
    assert summary["stack"] == "real-worker" and summary["database"] == kind
    jobs = USERS * JOBS_PER_USER
    assert summary["jobs"] == jobs and summary["succeeded"] == jobs
    assert summary["success_rate"] == 1.0
    assert summary["rejected"] == 0 and summary["errors"] == {}
    # Every job terminal, none charged twice, none charged when failed, ledger == balances.
    assert summary["audit"] == {"ok": True, "by_status": {"SUCCEEDED": jobs}, "problems": []}
    # Every job succeeded: no dispatch was a stray to cancel on Runpod (the old message,
    # "job lost during dispatch", was printed for runs whose callback beat mark_running).
    assert "stray run" not in done.stderr and "lost during dispatch" not in done.stderr
    figures = [*summary["queue_latency_s"].values(), *summary["e2e_latency_s"].values()]
    for seconds in [*figures, summary["wall_s"]]:
        assert seconds == round(seconds, 2)  # printed to the hundredth of a second
