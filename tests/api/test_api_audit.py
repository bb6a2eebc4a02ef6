"""The audit finds broken invariants (it is what the load test relies on)."""

from __future__ import annotations

import time

from api_helpers import make_jobs

from api_stub import jobs
from api_stub.audit import audit
from api_stub.auth import NewUser
from api_stub.db import Database


def test_a_clean_history_passes(db: Database, alice: NewUser) -> None:
    ids = make_jobs(db, alice, 2)
    with db.transaction() as tx:
        jobs.fail(tx, ids[0], code="X", message="m", now=time.time(), source="t")
    report = audit(db, require_terminal=False)
    assert report.ok, report.problems
    assert report.by_status == {"FAILED": 1, "QUEUED": 1}
    assert not audit(db).ok  # one job is not terminal


def test_unsettled_success_and_ledger_drift_are_reported(db: Database, alice: NewUser) -> None:
    [job_id] = make_jobs(db, alice, 1)
    with db.transaction() as tx:
        tx.execute("UPDATE jobs SET status = 'SUCCEEDED' WHERE id = ?", (job_id,))
        tx.execute(
            "UPDATE balances SET available = available + 5 WHERE user_id = ?", (alice.user.id,)
        )
    problems = audit(db).problems
    assert any("0 captures" in p for p in problems)
    assert any("ledger" in p for p in problems)
