"""Job submission: validation with the worker's own schema, idempotency, credit holds.

The jobs, their holds and (for a batch) the batch row are written in one transaction: either
every job exists with its credits held, or nothing was written.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from api_stub import credits, jobs
from api_stub.auth import User
from api_stub.db import INTEGRITY_ERRORS, Database, Row, Tx
from api_stub.jobs import NewJob
from api_stub.schemas import CreateJob
from api_stub.settings import ApiSettings
from api_stub.storage import is_safe_key
from handler.errors import JobError
from handler.params import validate_params

MAX_IDEMPOTENCY_KEY_CHARS = 255


class SubmitError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass
class Submitted:
    rows: list[Row]
    batch_id: str | None = None
    replayed: bool = False
    holds: list[int] = field(default_factory=list)


def prepare(
    request: CreateJob, *, user: User, settings: ApiSettings, field_prefix: str = ""
) -> NewJob:
    """Validate one job request into a NewJob; raises SubmitError(422) naming the field."""
    try:
        params = validate_params(request.type, request.params)
    except JobError as exc:
        details = dict(exc.details)
        if "field" in details:
            details["field"] = field_prefix + details["field"]
        raise SubmitError(422, str(exc.code), field_prefix + exc.message, details) from None
    if len(request.inputs) > settings.max_inputs:
        raise SubmitError(
            422,
            "INVALID_PAYLOAD",
            f"{field_prefix}inputs: at most {settings.max_inputs} inputs per job",
            {"field": f"{field_prefix}inputs"},
        )
    inputs: list[dict[str, str]] = []
    for index, item in enumerate(request.inputs):
        where = f"{field_prefix}inputs.{index}"
        if item.url is not None:
            schemes = ("https", "http") if settings.allow_http_inputs else ("https",)
            parts = urlsplit(item.url)
            if parts.scheme not in schemes or not parts.hostname:
                raise SubmitError(
                    422,
                    "INVALID_PAYLOAD",
                    f"{where}.url: must be an {' or '.join(schemes)} URL",
                    {"field": f"{where}.url"},
                )
            inputs.append({"url": item.url})
        else:
            key = item.key or ""
            if not (key.startswith(f"uploads/{user.id}/") and is_safe_key(key)):
                # Same answer whether the key exists or belongs to someone else.
                raise SubmitError(
                    422,
                    "INVALID_PAYLOAD",
                    f"{where}.key: not one of your uploads",
                    {"field": f"{where}.key"},
                )
            inputs.append({"key": key})
    cost = settings.job_costs.get(request.type, 1) * len(inputs)
    return NewJob(
        type=request.type,
        params=params.model_dump(mode="json"),
        inputs=inputs,
        cost=cost,
        timeout_s=request.timeout_s or settings.job_timeout_s,
    )


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise SubmitError(
            400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-255 printable characters"
        )
    return key


def find_replay(
    db: Database, *, user: User, key: str | None, digest: str, batch: bool
) -> Submitted | None:
    """The earlier result of the same Idempotency-Key, if any (a different body is an error)."""
    if key is None:
        return None
    with db.transaction(write=False) as tx:
        return _replay(tx, user=user, key=key, digest=digest, batch=batch)


def _replay(tx: Tx, *, user: User, key: str, digest: str, batch: bool) -> Submitted | None:
    if batch:
        row = tx.one(
            "SELECT id, request_hash FROM batches WHERE user_id = ? AND idempotency_key = ?",
            (user.id, key),
        )
        if row is None:
            return None
        _same_request(row["request_hash"], digest)
        rows = tx.all("SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index", (row["id"],))
        return Submitted(rows, batch_id=row["id"], replayed=True)
    found = jobs.by_idempotency_key(tx, user.id, key)
    if found is None:
        return None
    _same_request(found["request_hash"], digest)
    return Submitted([found], replayed=True)


def _same_request(stored: str | None, digest: str) -> None:
    if stored != digest:
        raise SubmitError(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request",
        )


def submit(
    db: Database,
    *,
    user: User,
    new_jobs: list[NewJob],
    now: float,
    idempotency_key: str | None,
    digest: str,
    batch: bool,
) -> Submitted:
    """Insert the jobs and hold their credits atomically; 402 when the balance is short."""
    try:
        with db.transaction() as tx:
            batch_id = None
            if batch:
                batch_id = str(uuid.uuid4())
                tx.execute(
                    "INSERT INTO batches (id, user_id, idempotency_key, request_hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (batch_id, user.id, idempotency_key, digest, now),
                )
            ids = jobs.insert_jobs(
                tx,
                user_id=user.id,
                priority=user.priority,
                jobs=new_jobs,
                now=now,
                idempotency_key=idempotency_key,
                request_hash=digest,
                batch_id=batch_id,
            )
            holds = [(job_id, job.cost) for job_id, job in zip(ids, new_jobs, strict=True)]
            if not credits.hold(tx, user.id, holds, now=now):
                needed = sum(cost for _, cost in holds)
                raise SubmitError(
                    402,
                    "INSUFFICIENT_CREDITS",
                    f"{needed} credits needed; the balance is short",
                    {"needed": needed},
                )
            tx.notify(jobs.NOTIFY_CHANNEL)
            rows = jobs.get_many(tx, ids)
    except INTEGRITY_ERRORS:
        # A concurrent request with the same Idempotency-Key won the insert: answer with it.
        replay = find_replay(db, user=user, key=idempotency_key, digest=digest, batch=batch)
        if replay is None:
            raise
        return replay
    return Submitted(rows, batch_id=batch_id)
