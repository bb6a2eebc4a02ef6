"""Job rows rendered for their owner, with outputs as short-lived presigned GET URLs."""

from __future__ import annotations

import logging

from api_stub.db import Row
from api_stub.jobs import loads
from api_stub.schemas import ErrorBody, JobView, ModelInfo, OutputView, Timings
from api_stub.storage import Storage, key_in_prefix, output_prefix_key

log = logging.getLogger(__name__)


def job_view(row: Row, *, storage: Storage, ttl_s: int, now: float) -> JobView:
    prefix = output_prefix_key(row["user_id"], row["id"])
    outputs = []
    for item in loads(row["output_urls"]) or []:
        key = key_in_prefix(str(item.get("url", "")), prefix)
        if key is None:
            # Only objects under the job's own prefix are ever signed for its owner.
            log.warning("output outside the job prefix", extra={"job_id": row["id"]})
            continue
        outputs.append(
            OutputView(**{**item, "url": storage.presign_get(key, ttl_s=ttl_s, now=now)})
        )
    error = None
    if row["status"] in ("FAILED", "CANCELLED"):
        details = loads(row["error_details"])
        error = ErrorBody(
            code=row["error_code"] or "UNKNOWN",
            message=row["error"] or "",
            details={k: v for k, v in (details or {}).items() if v is not None} or None,
        )
    return JobView(
        id=row["id"],
        type=row["type"],
        status=row["status"],
        params=loads(row["params"]),
        inputs=len(loads(row["input_urls"])),
        cost=int(row["cost"]),
        attempts=int(row["attempts"]),
        batch_id=row["batch_id"],
        outputs=outputs,
        error=error,
        timings=timings(row),
        gpu_seconds=row["gpu_seconds"],
        worker_version=row["worker_version"],
        comfyui_version=row["comfyui_version"],
        models=[ModelInfo(**m) for m in loads(row["models"]) or []],
    )


def timings(row: Row) -> Timings:
    created, running, finished = row["created_at"], row["running_at"], row["finished_at"]
    return Timings(
        created_at=created,
        dispatched_at=row["dispatched_at"],
        running_at=running,
        finished_at=finished,
        queue_s=None if running is None else max(0.0, running - created),
        run_s=None if running is None or finished is None else max(0.0, finished - running),
        total_s=None if finished is None else max(0.0, finished - created),
        worker=loads(row["worker_timings"]) or {},
    )
