"""Job rows and their state machine.

QUEUED -> DISPATCHING (claimed, leased) -> RUNNING (Runpod job id known) -> SUCCEEDED | FAILED |
CANCELLED. Every transition is a conditional UPDATE on the current status, so transitions are
monotonic: a terminal job never changes again, a late FAILED cannot undo SUCCEEDED, and two
racing callbacks settle credits once. The single backward move, DISPATCHING -> QUEUED when a
lease expires, lives in api_stub.jobqueue.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from api_stub import credits
from api_stub.db import Row, Tx, in_list, named_in_list
from handler.contract import JobResult


class Status(StrEnum):
    QUEUED = "QUEUED"
    DISPATCHING = "DISPATCHING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
OPEN = (Status.QUEUED, Status.DISPATCHING, Status.RUNNING)
ACTIVE = (Status.DISPATCHING, Status.RUNNING)
NOTIFY_CHANNEL = "simplypng_jobs"


class ControlErrorCode(StrEnum):
    """Failure codes set by the control plane (the worker's own codes are handler.errors)."""

    DISPATCH_FAILED = "DISPATCH_FAILED"
    RUNPOD_FAILED = "RUNPOD_FAILED"
    RUNPOD_TIMED_OUT = "RUNPOD_TIMED_OUT"
    RUNPOD_CANCELLED = "RUNPOD_CANCELLED"
    JOB_LOST = "JOB_LOST"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class NewJob:
    type: str
    params: dict[str, Any]
    inputs: list[dict[str, str]]
    cost: int
    timeout_s: int


@dataclass(frozen=True)
class Finished:
    """A terminal transition that happened now (for metrics and logs)."""

    row: Row
    settled: int | None


def insert_jobs(
    tx: Tx,
    *,
    user_id: str,
    priority: int,
    jobs: list[NewJob],
    now: float,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    batch_id: str | None = None,
) -> list[str]:
    ids = []
    for index, job in enumerate(jobs):
        job_id = str(uuid.uuid4())
        tx.execute(
            "INSERT INTO jobs (id, user_id, batch_id, batch_index, type, params, input_urls,"
            " status, priority, cost, timeout_s, idempotency_key, request_hash, created_at,"
            " updated_at) VALUES (:id, :user_id, :batch_id, :batch_index, :type, :params,"
            " :input_urls, 'QUEUED', :priority, :cost, :timeout_s, :idempotency_key,"
            " :request_hash, :now, :now)",
            {
                "id": job_id,
                "user_id": user_id,
                "batch_id": batch_id,
                "batch_index": index if batch_id else None,
                "type": job.type,
                "params": json.dumps(job.params, sort_keys=True),
                "input_urls": json.dumps(job.inputs),
                "priority": priority,
                "cost": job.cost,
                "timeout_s": job.timeout_s,
                "idempotency_key": idempotency_key if batch_id is None else None,
                "request_hash": request_hash if batch_id is None else None,
                "now": now,
            },
        )
        ids.append(job_id)
    return ids


def get(tx: Tx, job_id: str, *, user_id: str | None = None) -> Row | None:
    """A job by id; with user_id, only that user's job (others' jobs read as missing)."""
    if not is_uuid(job_id):
        return None
    job_id = job_id.lower()
    if user_id is None:
        return tx.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    return tx.one("SELECT * FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id))


def get_many(tx: Tx, job_ids: list[str]) -> list[Row]:
    rows = tx.all(f"SELECT * FROM jobs WHERE id IN ({in_list(job_ids)})", job_ids)
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    return sorted(rows, key=lambda row: order[row["id"]])


def by_idempotency_key(tx: Tx, user_id: str, key: str) -> Row | None:
    return tx.one("SELECT * FROM jobs WHERE user_id = ? AND idempotency_key = ?", (user_id, key))


def apply_result(
    tx: Tx, job_id: str, result: JobResult, *, now: float, source: str
) -> Finished | None:
    """Apply a worker result (callback or /status output). None when the job was terminal."""
    metrics = result.metrics
    open_statuses, open_params = named_in_list("open", [str(status) for status in OPEN])
    params: dict[str, Any] = {
        "gpu_seconds": metrics.gpu_seconds,
        "worker_version": metrics.worker_version,
        "comfyui_version": metrics.comfyui_version,
        "models": json.dumps([m.model_dump(mode="json") for m in metrics.models]),
        "worker_timings": json.dumps(metrics.timings),
        "source": source,
        "now": now,
        "id": job_id,
        **open_params,
    }
    finished = (
        " gpu_seconds = :gpu_seconds, worker_version = :worker_version,"
        " comfyui_version = :comfyui_version, models = :models,"
        " worker_timings = :worker_timings, result_source = :source,"
        " running_at = COALESCE(running_at, :now), finished_at = :now, updated_at = :now,"
        " lease_owner = NULL, lease_until = NULL"
        f" WHERE id = :id AND status IN ({open_statuses}) RETURNING *"
    )
    if result.status == "SUCCEEDED":
        outputs = json.dumps([o.model_dump(mode="json") for o in result.outputs])
        row = tx.one(
            "UPDATE jobs SET status = 'SUCCEEDED', output_urls = :outputs," + finished,
            {**params, "outputs": outputs},
        )
        kind: credits.Settlement = "capture"
    else:
        details = result.error_details.model_dump(mode="json") if result.error_details else None
        row = tx.one(
            "UPDATE jobs SET status = 'FAILED', error = :error, error_code = :error_code,"
            " error_details = :error_details," + finished,
            {
                **params,
                "error": result.error or "the worker reported a failure",
                "error_code": str(result.error_code) if result.error_code else "WORKER_FAILED",
                "error_details": json.dumps(details) if details else None,
            },
        )
        kind = "release"
    if row is None:
        return None
    settled = credits.settle(tx, job_id, kind, now=now)
    tx.notify(NOTIFY_CHANNEL)
    return Finished(row, settled)


def fail(
    tx: Tx,
    job_id: str,
    *,
    code: str,
    message: str,
    now: float,
    source: str,
    status: Status = Status.FAILED,
    only_from: tuple[Status, ...] = OPEN,
    lease_owner: str | None = None,
) -> Finished | None:
    """Move an open job to FAILED (or CANCELLED) and release its hold. None if not open."""
    owner_clause = " AND lease_owner = :lease_owner" if lease_owner is not None else ""
    from_statuses, from_params = named_in_list("from", [str(s) for s in only_from])
    row = tx.one(
        "UPDATE jobs SET status = :status, error = :error, error_code = :code,"
        " result_source = :source, finished_at = :now, updated_at = :now,"
        " lease_owner = NULL, lease_until = NULL"
        f" WHERE id = :id AND status IN ({from_statuses}){owner_clause} RETURNING *",
        {
            "status": str(status),
            "error": message,
            "code": str(code),
            "source": source,
            "now": now,
            "id": job_id,
            "lease_owner": lease_owner,
            **from_params,
        },
    )
    if row is None:
        return None
    settled = credits.settle(tx, job_id, "release", now=now)
    tx.notify(NOTIFY_CHANNEL)
    return Finished(row, settled)


def record_webhook(tx: Tx, webhook_id: str, job_id: str, *, outcome: str, now: float) -> bool:
    """Remember a webhook-id; False when it was seen before (a duplicate delivery)."""
    row = tx.one(
        "INSERT INTO webhook_events (webhook_id, job_id, outcome, received_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING webhook_id",
        (webhook_id, job_id, outcome, now),
    )
    return row is not None


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)
