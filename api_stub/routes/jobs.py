"""Job routes: create, batch, read, cancel."""

from __future__ import annotations

import functools
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from api_stub import jobs, ratelimit, submit
from api_stub.auth import User
from api_stub.errors import ApiError
from api_stub.jobs import ControlErrorCode, Status
from api_stub.routes.common import current_user, parse_body, require_json, services
from api_stub.runpod_client import RunpodError
from api_stub.schemas import BatchView, CreateBatch, CreateJob
from api_stub.services import Services
from api_stub.views import job_view

log = logging.getLogger(__name__)


async def create_job(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)
    body = await parse_body(request, CreateJob)
    new_job = _prepare(body, user, svc)
    done = await _submit(request, svc, user, [new_job], body.model_dump(mode="json"), batch=False)
    row = done.rows[0]
    view = job_view(row, storage=svc.storage, ttl_s=svc.settings.download_ttl_s, now=svc.clock())
    return JSONResponse(
        view.model_dump(mode="json"),
        status_code=200 if done.replayed else 201,
        headers={"Location": f"/api/jobs/{row['id']}"},
    )


async def create_batch(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)
    body = await parse_body(request, CreateBatch)
    if len(body.jobs) > svc.settings.batch_max_jobs:
        raise ApiError(
            422,
            "INVALID_PAYLOAD",
            f"jobs: at most {svc.settings.batch_max_jobs} jobs per batch",
            {"field": "jobs"},
        )
    new_jobs = [
        _prepare(job, user, svc, field_prefix=f"jobs.{i}.") for i, job in enumerate(body.jobs)
    ]
    done = await _submit(request, svc, user, new_jobs, body.model_dump(mode="json"), batch=True)
    now = svc.clock()
    view = BatchView(
        batch_id=done.batch_id or "",
        jobs=[
            job_view(row, storage=svc.storage, ttl_s=svc.settings.download_ttl_s, now=now)
            for row in done.rows
        ],
    )
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if done.replayed else 201)


def _prepare(body: CreateJob, user: User, svc: Services, field_prefix: str = "") -> jobs.NewJob:
    try:
        return submit.prepare(body, user=user, settings=svc.settings, field_prefix=field_prefix)
    except submit.SubmitError as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.details) from None


async def _submit(
    request: Request,
    svc: Services,
    user: User,
    new_jobs: list[jobs.NewJob],
    canonical: Any,
    *,
    batch: bool,
) -> submit.Submitted:
    try:
        key = submit.check_idempotency_key(request.headers.get("idempotency-key"))
        digest = submit.request_hash(canonical)
        replay = await run_in_threadpool(
            submit.find_replay, svc.db, user=user, key=key, digest=digest, batch=batch
        )
        if replay is not None:
            return replay
        settings = svc.settings
        decision = await run_in_threadpool(
            ratelimit.take,
            svc.db,
            user.id,
            clock=svc.clock,  # read inside the transaction, not before the waits
            capacity=settings.rate_limit_burst,
            per_s=settings.rate_limit_per_s,
        )
        if not decision.allowed:
            raise ApiError(
                429,
                "RATE_LIMITED",
                "too many requests; retry later",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
        done = await run_in_threadpool(
            submit.submit,
            svc.db,
            user=user,
            new_jobs=new_jobs,
            now=svc.clock(),
            idempotency_key=key,
            digest=digest,
            batch=batch,
        )
    except submit.SubmitError as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.details) from None
    if not done.replayed:
        for row in done.rows:
            svc.metrics.jobs_created.labels(row["type"]).inc()
        log.info(
            "jobs created",
            extra={
                "user_id": user.id,
                "job_ids": [r["id"] for r in done.rows],
                "batch_id": done.batch_id,
            },
        )
    return done


async def get_job(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)
    row = await run_in_threadpool(_read_job, svc, request.path_params["job_id"], user.id)
    view = job_view(row, storage=svc.storage, ttl_s=svc.settings.download_ttl_s, now=svc.clock())
    return JSONResponse(view.model_dump(mode="json"))


def _read_job(svc: Services, job_id: str, user_id: str) -> jobs.Row:
    with svc.db.transaction(write=False) as tx:
        row = jobs.get(tx, job_id, user_id=user_id)
    if row is None:
        # Someone else's job and a job that does not exist answer the same.
        raise ApiError(404, "NOT_FOUND", "no such job")
    return row


async def cancel_job(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)
    require_json(request, body_optional=True)  # no body is needed; a form body is refused
    job_id = request.path_params["job_id"]
    row = await run_in_threadpool(_read_job, svc, job_id, user.id)
    finished = await run_in_threadpool(_cancel, svc, row["id"])
    if finished is None:
        current = await run_in_threadpool(_read_job, svc, job_id, user.id)
        raise ApiError(
            409,
            "NOT_CANCELLABLE",
            f"the job is already {current['status']}",
            {"status": current["status"]},
        )
    svc.metrics.observe_finished(finished.row, finished.settled)
    runpod_id = finished.row["runpod_job_id"]
    if runpod_id:
        try:
            cancelled = await run_in_threadpool(
                functools.partial(svc.runpod.cancel, runpod_id, job_id=job_id)
            )
        except RunpodError as exc:
            cancelled = False
            log.warning("runpod cancel failed", extra={"job_id": job_id, "error": str(exc)})
        log.info("job cancelled", extra={"job_id": job_id, "runpod_cancelled": cancelled})
    view = job_view(
        finished.row, storage=svc.storage, ttl_s=svc.settings.download_ttl_s, now=svc.clock()
    )
    return JSONResponse(view.model_dump(mode="json"))


def _cancel(svc: Services, job_id: str) -> jobs.Finished | None:
    with svc.db.transaction() as tx:
        return jobs.fail(
            tx,
            job_id,
            code=ControlErrorCode.CANCELLED,
            message="cancelled by the user",
            now=svc.clock(),
            source="user",
            status=Status.CANCELLED,
        )
