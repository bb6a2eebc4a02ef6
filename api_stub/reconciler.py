"""The reconciler process: asks Runpod /status about RUNNING jobs whose callback is overdue.

- COMPLETED with a valid result: applied exactly like a callback (it may say FAILED).
- FAILED, TIMED_OUT, CANCELLED: the job is FAILED and its hold released.
- IN_QUEUE / IN_PROGRESS: checked again later; cancelled and FAILED once past Runpod's own
  ttl plus the job timeout.
- unknown to Runpod (results expire after 30 minutes): FAILED once LOST_AFTER_S has passed.
It also re-queues expired dispatch leases, so a crashed dispatcher's jobs move on even when no
dispatcher is running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from api_stub import jobqueue, jobs
from api_stub.db import Database, Row
from api_stub.jobs import ControlErrorCode, Finished
from api_stub.logs import settings_for_log
from api_stub.metrics import Metrics
from api_stub.runpod_client import RunpodClient, RunpodError, RunpodJob
from api_stub.settings import ApiSettings
from handler.contract import JobResult
from handler.errors import ErrorCode

log = logging.getLogger(__name__)
# Logged at start (secrets only as set or not, DATABASE_URL without its password).
LOGGED_SETTINGS = (
    "database_url",
    "runpod_endpoint_url",
    "runpod_api_key",
    "runpod_status_method",
    "runpod_status_timeout_s",
    "runpod_ttl_s",
    "reconcile_after_s",
    "reconcile_every_s",
    "reconcile_concurrency",
    "lost_after_s",
    "dispatch_max_claims",
    "poll_s",
)
WORKER_ERROR_CODES = frozenset(code.value for code in ErrorCode)

_FAILED_STATUSES: dict[str, tuple[str, str]] = {
    "FAILED": (ControlErrorCode.RUNPOD_FAILED, "Runpod reported the job FAILED"),
    "TIMED_OUT": (ControlErrorCode.RUNPOD_TIMED_OUT, "Runpod timed the job out"),
    "CANCELLED": (ControlErrorCode.RUNPOD_CANCELLED, "the job was cancelled on Runpod"),
}
_WAITING = {"IN_QUEUE", "IN_PROGRESS"}


def worker_failure(error: Any) -> tuple[str, str] | None:
    """(code, message) from a worker's Runpod error string "CODE: message", if it is one."""
    if not isinstance(error, str):
        return None
    code, sep, message = error.partition(": ")
    if not sep or code not in WORKER_ERROR_CODES:
        return None
    return code, message.strip()[:500]


class Reconciler:
    def __init__(
        self,
        *,
        db: Database,
        runpod: RunpodClient,
        settings: ApiSettings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.db = db
        self.runpod = runpod
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=settings.reconcile_concurrency, thread_name_prefix="reconcile"
        )
        self._failing = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_once(self) -> int:
        """One pass; returns how many jobs were checked."""
        s = self.settings
        now = self._clock()
        reaped = jobqueue.reap(self.db, now=now, max_claims=s.dispatch_max_claims)
        if reaped.requeued:
            # A dispatcher died holding these (or is stuck in /run): say which, as it would.
            log.warning("leases expired; jobs re-queued", extra={"job_ids": reaped.requeued})
        for finished in reaped.failed:
            log.warning(
                "dispatch abandoned; job failed",
                extra={"job_id": finished.row["id"], "attempts": finished.row["attempts"]},
            )
            self._observe(finished)
        due = jobqueue.due_for_check(
            self.db,
            now=now,
            after_s=s.reconcile_after_s,
            every_s=s.reconcile_every_s,
            limit=s.reconcile_concurrency * 4,
        )
        list(self._pool.map(self.check, due))
        return len(due)

    def run_forever(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set; logs its settings on start and each change of state
        (failing and recovered passes), not every pass."""
        log.info(
            "reconciler started",
            extra={"settings": settings_for_log(self.settings, LOGGED_SETTINGS)},
        )
        checked = 0
        try:
            while not stop.is_set():
                found = self._pass()
                checked += found
                if found < self.settings.reconcile_concurrency * 4:
                    stop.wait(self.settings.poll_s)
        finally:
            log.info("reconciler stopped", extra={"checked": checked})

    def _pass(self) -> int:
        """One pass of the loop; logs when passes start failing and when they recover."""
        try:
            checked = self.run_once()
        except Exception:
            log.exception("reconcile pass failed")
            self._failing = True
            return 0
        if self._failing:
            log.info("reconcile passes succeed again")
            self._failing = False
        return checked

    def check(self, job: Row) -> None:
        job_id, runpod_id = job["id"], job["runpod_job_id"]
        try:
            state = self.runpod.status(runpod_id, job_id=job_id)
        except RunpodError as exc:
            log.warning("status check failed", extra={"job_id": job_id, "error": str(exc)})
            return
        log.info(
            "status checked",
            extra={"job_id": job_id, "runpod_job_id": runpod_id, "status": state.status},
        )
        now = self._clock()
        if state.status == "COMPLETED":
            self._completed(job, state, now)
        elif state.status in _FAILED_STATUSES:
            code, message = _FAILED_STATUSES[state.status]
            if state.status == "FAILED":
                # The worker reports "CODE: message"; keep its code when the callback was lost.
                code, message = worker_failure(state.error) or (code, message)
            self._fail(job_id, code, message, now)
        elif state.status in _WAITING:
            deadline = job["running_at"] + self.settings.runpod_ttl_s + job["timeout_s"] + 60
            if now > deadline:
                self._cancel_quietly(runpod_id, job_id)
                self._fail(job_id, ControlErrorCode.RUNPOD_TIMED_OUT, "the job never finished", now)
        elif now - job["running_at"] > self.settings.lost_after_s:
            self._fail(job_id, ControlErrorCode.JOB_LOST, "Runpod no longer knows the job", now)

    def _completed(self, job: Row, state: RunpodJob, now: float) -> None:
        try:
            result = JobResult.model_validate(state.output)
        except ValidationError:
            self._fail(
                job["id"],
                ControlErrorCode.RUNPOD_FAILED,
                "the job completed without a valid result",
                now,
            )
            return
        if result.job_id is not None and result.job_id.lower() != job["id"]:
            self._fail(
                job["id"], ControlErrorCode.RUNPOD_FAILED, "the result names another job", now
            )
            return
        with self.db.transaction() as tx:
            finished = jobs.apply_result(tx, job["id"], result, now=now, source="reconciler")
        if finished is not None:
            self._observe(finished)

    def _fail(self, job_id: str, code: str, message: str, now: float) -> None:
        with self.db.transaction() as tx:
            finished = jobs.fail(
                tx, job_id, code=code, message=message, now=now, source="reconciler"
            )
        if finished is not None:
            self._observe(finished)

    def _cancel_quietly(self, runpod_id: str, job_id: str) -> None:
        try:
            self.runpod.cancel(runpod_id, job_id=job_id)
        except RunpodError as exc:
            log.warning("cancel failed", extra={"job_id": job_id, "error": str(exc)})

    def _observe(self, finished: Finished) -> None:
        self.metrics.observe_finished(finished.row, finished.settled)
        log.info(
            "job reconciled",
            extra={"job_id": finished.row["id"], "status": finished.row["status"]},
        )
