"""Helpers shared by the control-plane tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from api_stub import signing
from api_stub.auth import NewUser
from api_stub.db import Database
from api_stub.dispatcher import Dispatcher
from api_stub.services import make_runpod, make_storage
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import sign_callback

MASTER = "m" * 48
JOB = {"type": "bg_remove", "params": {"halo": 3}, "inputs": [{"url": "https://img.example/a.png"}]}


def build_dispatcher(db: Database, settings: ApiSettings, **extra: Any) -> Dispatcher:
    """A Dispatcher on `db` with the settings' own Runpod client and storage."""
    return Dispatcher(
        db=db,
        runpod=make_runpod(settings),
        storage=make_storage(settings),
        settings=settings,
        master_key=MASTER,
        **extra,
    )


def close_dispatcher(dispatcher: Dispatcher) -> None:
    dispatcher.close()
    dispatcher.runpod.close()


def auth(user: NewUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.api_key}"}


def result_body(job_id: str, status: str = "SUCCEEDED", **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "job_id": job_id,
        "status": status,
        "outputs": [],
        "metrics": {"gpu_seconds": 1.5, "worker_version": "test-1", "timings": {"execute": 1.0}},
    }
    if status == "FAILED":
        body.update(error="node 3 raised", error_code="NODE_ERROR", error_details={"node_id": "3"})
    body.update(extra)
    return json.dumps(body).encode()


def signed(
    job_id: str,
    body: bytes,
    *,
    key: bytes | None = None,
    webhook_id: str | None = None,
    timestamp: float | None = None,
) -> dict[str, str]:
    """Headers of a callback signed with the job's derived key (or `key`)."""
    return sign_callback(
        body,
        key if key is not None else signing.callback_key(MASTER, job_id),
        webhook_id or f"msg_{uuid.uuid4().hex}",
        timestamp=timestamp,
    )


def row_counts(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as tx:
        return {
            table: int(tx.one(f"SELECT COUNT(*) AS n FROM {table}")["n"])  # type: ignore[index]
            for table in ("jobs", "credit_ledger", "webhook_events", "balances")
        }


def job_row(db: Database, job_id: str) -> dict[str, Any]:
    with db.transaction(write=False) as tx:
        row = tx.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    assert row is not None
    return row


def ledger(db: Database, job_id: str) -> list[str]:
    with db.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT kind FROM credit_ledger WHERE job_id = ? ORDER BY created_at, kind", (job_id,)
        )
    return [row["kind"] for row in rows]


def balance(db: Database, user_id: str) -> tuple[int, int]:
    with db.transaction(write=False) as tx:
        row = tx.one("SELECT available, held FROM balances WHERE user_id = ?", (user_id,))
    assert row is not None
    return int(row["available"]), int(row["held"])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def make_jobs(
    db: Database, user: NewUser, count: int, *, timeout_s: int = 60, job_type: str = "bg_remove"
) -> list[str]:
    """Insert QUEUED jobs with their holds, as POST /api/jobs would."""
    from api_stub.jobs import NewJob
    from api_stub.submit import submit

    new = NewJob(
        type=job_type,
        params={"v": 1},
        inputs=[{"url": "https://img.example/a.png"}],
        cost=1,
        timeout_s=timeout_s,
    )
    done = submit(
        db,
        user=user.user,
        new_jobs=[new] * count,
        now=time.time(),
        idempotency_key=None,
        digest="",
        batch=count > 1,
    )
    return [row["id"] for row in done.rows]


def statuses(db: Database) -> dict[str, int]:
    with db.transaction(write=False) as tx:
        rows = tx.all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
