"""Claiming queued jobs for dispatch, leases, and picking running jobs for reconciliation.

A global MAX_INFLIGHT checked by counting and then claiming is racy across dispatchers, so the
whole claim runs under one transaction-scoped advisory lock on Postgres (SQLite serialises
writers with BEGIN IMMEDIATE anyway). FOR UPDATE SKIP LOCKED keeps claims from waiting on rows
that other transactions (a cancel, a callback) hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api_stub import jobs
from api_stub.db import Database, Row, Tx
from api_stub.jobs import ControlErrorCode, Finished, Status

CLAIM_LOCK_KEY = 0x51_4D_50_4E_47_02


@dataclass
class Claim:
    jobs: list[Row] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[Finished] = field(default_factory=list)


def _skip_locked(tx: Tx) -> str:
    return " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""


def claim(
    db: Database,
    *,
    owner: str,
    limit: int,
    max_inflight: int,
    lease_s: float,
    max_claims: int,
    now: float,
) -> Claim:
    """Re-queue expired leases, then lease up to `limit` QUEUED jobs within MAX_INFLIGHT."""
    result = Claim()
    with db.transaction() as tx:
        if tx.dialect == "postgres":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (CLAIM_LOCK_KEY,))
        _reap(tx, now=now, max_claims=max_claims, result=result)
        active = tx.one("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('DISPATCHING', 'RUNNING')")
        room = min(limit, max_inflight - int(active["n"] if active else 0))
        if room <= 0:
            return result
        rows = tx.all(
            "UPDATE jobs SET status = 'DISPATCHING', lease_owner = ?, lease_until = ?,"
            " dispatched_at = ?, attempts = attempts + 1, updated_at = ?"
            " WHERE id IN (SELECT id FROM jobs WHERE status = 'QUEUED'"
            f" ORDER BY priority DESC, created_at LIMIT ?{_skip_locked(tx)})"
            " RETURNING *",
            (owner, now + lease_s, now, now, room),
        )
    result.jobs = sorted(rows, key=lambda row: (-row["priority"], row["created_at"]))
    return result


def reap(db: Database, *, now: float, max_claims: int) -> Claim:
    """Re-queue (or fail, after too many claims) DISPATCHING jobs whose lease has expired."""
    result = Claim()
    with db.transaction() as tx:
        _reap(tx, now=now, max_claims=max_claims, result=result)
    return result


def _reap(tx: Tx, *, now: float, max_claims: int, result: Claim) -> None:
    expired = tx.all(
        "SELECT id, attempts FROM jobs WHERE status = 'DISPATCHING' AND lease_until < ?"
        f"{_skip_locked(tx)}",
        (now,),
    )
    for row in expired:
        if row["attempts"] >= max_claims:
            finished = jobs.fail(
                tx,
                row["id"],
                code=ControlErrorCode.DISPATCH_FAILED,
                message=f"dispatch abandoned after {row['attempts']} claims",
                now=now,
                source="reaper",
                only_from=(Status.DISPATCHING,),
            )
            if finished:
                result.failed.append(finished)
            continue
        moved = tx.execute(
            "UPDATE jobs SET status = 'QUEUED', lease_owner = NULL, lease_until = NULL,"
            " updated_at = ? WHERE id = ? AND status = 'DISPATCHING' AND lease_until < ?",
            (now, row["id"], now),
        )
        if moved:
            result.requeued.append(row["id"])
    if result.requeued:
        tx.notify(jobs.NOTIFY_CHANNEL)


def renew_lease(db: Database, job_id: str, *, owner: str, until: float, now: float) -> bool:
    """Extend our lease; False if the job is no longer ours (re-queued or cancelled)."""
    with db.transaction() as tx:
        return (
            tx.execute(
                "UPDATE jobs SET lease_until = ?, updated_at = ?"
                " WHERE id = ? AND status = 'DISPATCHING' AND lease_owner = ?",
                (until, now, job_id, owner),
            )
            == 1
        )


def mark_running(
    db: Database, job_id: str, *, owner: str, runpod_job_id: str, now: float
) -> Row | None:
    """DISPATCHING -> RUNNING with the Runpod id; None if we lost the job meanwhile."""
    with db.transaction() as tx:
        return tx.one(
            "UPDATE jobs SET status = 'RUNNING', runpod_job_id = ?, running_at = ?,"
            " checked_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'DISPATCHING' AND lease_owner = ? RETURNING *",
            (runpod_job_id, now, now, job_id, owner),
        )


def adopt_finished_run(db: Database, job_id: str, *, runpod_job_id: str, attempts: int) -> bool:
    """Record the Runpod id on a job whose callback landed before mark_running; True if that is
    what happened. `attempts` (from our claim) rules out a job re-claimed since."""
    with db.transaction() as tx:
        row = tx.one(
            "UPDATE jobs SET runpod_job_id = ? WHERE id = ? AND result_source = 'webhook'"
            " AND runpod_job_id IS NULL AND attempts = ? RETURNING id",
            (runpod_job_id, job_id, attempts),
        )
    return row is not None


def status_of(db: Database, job_id: str) -> str | None:
    with db.transaction(write=False) as tx:
        row = tx.one("SELECT status FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else str(row["status"])


def due_for_check(
    db: Database, *, now: float, after_s: float, every_s: float, limit: int
) -> list[Row]:
    """RUNNING jobs without a result past the threshold; stamps checked_at to spread checks."""
    with db.transaction() as tx:
        return tx.all(
            "UPDATE jobs SET checked_at = ? WHERE id IN (SELECT id FROM jobs"
            " WHERE status = 'RUNNING' AND running_at <= ?"
            " AND (checked_at IS NULL OR checked_at <= ?)"
            f" ORDER BY COALESCE(checked_at, running_at) LIMIT ?{_skip_locked(tx)})"
            " RETURNING *",
            (now, now - after_s, now - every_s, limit),
        )


def counts_by_status(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT status, COUNT(*) AS n FROM jobs WHERE status IN"
            " ('QUEUED', 'DISPATCHING', 'RUNNING') GROUP BY status"
        )
    return {row["status"]: int(row["n"]) for row in rows}


def success_ratio(db: Database, *, since: float) -> float | None:
    """SUCCEEDED / (SUCCEEDED + FAILED) among jobs finished since `since`; None if none."""
    with db.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT status, COUNT(*) AS n FROM jobs WHERE finished_at >= ?"
            " AND status IN ('SUCCEEDED', 'FAILED') GROUP BY status",
            (since,),
        )
    counts = {row["status"]: int(row["n"]) for row in rows}
    total = sum(counts.values())
    return None if total == 0 else counts.get("SUCCEEDED", 0) / total
