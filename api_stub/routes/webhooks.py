"""POST /api/webhooks/runpod: the worker's signed callback.

Order of checks: media type (415), signature (401), body (400), job (404), then one
transaction records the webhook-id and applies the result. A rejected call writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from api_stub import jobs
from api_stub.errors import error_response
from api_stub.jobs import Finished
from api_stub.routes.common import MEDIA_TYPE_DETAILS, json_media_type_refusal, services
from api_stub.schemas import CallbackAck
from api_stub.services import Services
from api_stub.webhooks import CallbackRejected, VerifiedCallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    outcome: str  # applied, ignored (job already terminal) or duplicate (webhook-id seen)
    job_status: str
    finished: Finished | None = None


def apply_callback(svc: Services, callback: VerifiedCallback) -> Applied:
    now = svc.clock()
    with svc.db.transaction() as tx:
        job = tx.one("SELECT id, status FROM jobs WHERE id = ?", (callback.job_id,))
        if job is None:
            raise CallbackRejected(404, "UNKNOWN_JOB", "no such job")
        if not jobs.record_webhook(
            tx, callback.webhook_id, callback.job_id, outcome=callback.result.status, now=now
        ):
            return Applied("duplicate", job["status"])
        finished = jobs.apply_result(
            tx, callback.job_id, callback.result, now=now, source="webhook"
        )
    if finished is None:
        return Applied("ignored", job["status"])
    return Applied("applied", finished.row["status"], finished)


async def runpod_webhook(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        refusal = json_media_type_refusal(request.headers)
        if refusal is not None:  # the worker (and Runpod) send application/json
            raise CallbackRejected(415, "UNSUPPORTED_MEDIA_TYPE", refusal, MEDIA_TYPE_DETAILS)
        body = await request.body()
        callback = svc.verifier.verify(body, request.headers)
        applied = await run_in_threadpool(apply_callback, svc, callback)
    except CallbackRejected as exc:
        svc.metrics.callbacks.labels(f"rejected_{exc.status}").inc()
        log.warning("callback rejected", extra={"status": exc.status, "code": exc.code})
        return error_response(exc.status, exc.code, exc.message, exc.details)
    svc.metrics.callbacks.labels(applied.outcome).inc()
    if applied.finished is not None:
        svc.metrics.observe_finished(applied.finished.row, applied.finished.settled)
    log.info(
        "callback",
        extra={
            "job_id": callback.job_id,
            "webhook_id": callback.webhook_id,
            "outcome": applied.outcome,
            "job_status": applied.job_status,
        },
    )
    ack = CallbackAck(status=applied.outcome, job_status=applied.job_status)  # type: ignore[arg-type]
    return JSONResponse(ack.model_dump(mode="json"))
