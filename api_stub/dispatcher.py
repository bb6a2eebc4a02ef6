"""The dispatcher process: claim QUEUED jobs, POST them to Runpod /run, mark them RUNNING.

Several may run at once. Each pass re-queues expired leases, then claims up to DISPATCH_BATCH
jobs within MAX_INFLIGHT (see api_stub.jobqueue). Between passes it sleeps on LISTEN/NOTIFY
(Postgres) with POLL_S as the fallback.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api_stub import jobqueue, jobs
from api_stub.db import Database, Row
from api_stub.jobs import ControlErrorCode, Finished, Status
from api_stub.logs import settings_for_log
from api_stub.metrics import Metrics
from api_stub.payload import build_payload, runpod_policy
from api_stub.runpod_client import RunpodClient, RunpodError
from api_stub.settings import ApiSettings
from api_stub.storage import Storage

log = logging.getLogger(__name__)
# Logged at start (secrets only as set or not, DATABASE_URL without its password).
LOGGED_SETTINGS = (
    "database_url",
    "runpod_endpoint_url",
    "runpod_api_key",
    "runpod_timeout_s",
    "runpod_ttl_s",
    "callback_url",
    "callback_master_key",
    "storage",
    "max_inflight",
    "dispatch_batch",
    "dispatch_attempts",
    "dispatch_backoff_s",
    "dispatch_max_claims",
    "lease_s",
    "poll_s",
)


class Dispatcher:
    def __init__(
        self,
        *,
        db: Database,
        runpod: RunpodClient,
        storage: Storage,
        settings: ApiSettings,
        master_key: str,
        metrics: Metrics | None = None,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.db = db
        self.runpod = runpod
        self.storage = storage
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._master = master_key
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=settings.dispatch_batch, thread_name_prefix="dispatch"
        )
        self._failing = False
        self._counts = {"claimed": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_once(self) -> int:
        """One pass: claim and dispatch; returns how many jobs were claimed."""
        s = self.settings
        claim = jobqueue.claim(
            self.db,
            owner=self.owner,
            limit=s.dispatch_batch,
            max_inflight=s.max_inflight,
            lease_s=s.lease_s,
            max_claims=s.dispatch_max_claims,
            now=self._clock(),
        )
        for finished in claim.failed:
            log.warning(
                "dispatch abandoned; job failed",
                extra={"job_id": finished.row["id"], "attempts": finished.row["attempts"]},
            )
            self._finished(finished)
        if claim.requeued:
            log.warning("leases expired; jobs re-queued", extra={"job_ids": claim.requeued})
        list(self._pool.map(self.dispatch, claim.jobs))
        return len(claim.jobs)

    def run_forever(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set; logs its settings on start and each change of state
        (a lost connection, failing and recovered passes), not every pass."""
        log.info(
            "dispatcher started",
            extra={
                "owner": self.owner,
                "wake": "listen" if self.db.dialect == "postgres" else "poll",
                "settings": settings_for_log(self.settings, LOGGED_SETTINGS),
            },
        )
        try:
            self._run_until(stop)
        finally:
            log.info("dispatcher stopped", extra={"owner": self.owner, **self._counts})

    def _run_until(self, stop: threading.Event) -> None:
        lost = False
        while not stop.is_set():
            try:
                with self.db.listen(jobs.NOTIFY_CHANNEL) as conn:
                    if lost:
                        log.info("dispatcher reconnected", extra={"owner": self.owner})
                        lost = False
                    self._loop(stop, conn)
            except Exception:
                # A lost LISTEN connection (database restart) must not end the process.
                log.exception("dispatcher loop failed; reconnecting", extra={"owner": self.owner})
                lost = True
                stop.wait(self.settings.poll_s)

    def _loop(self, stop: threading.Event, conn: Any) -> None:
        while not stop.is_set():
            claimed = self._pass()
            if claimed >= self.settings.dispatch_batch:
                continue  # more may be waiting: go again without sleeping
            if conn is None:
                stop.wait(self.settings.poll_s)
            else:
                for _ in conn.notifies(timeout=self.settings.poll_s, stop_after=1):
                    pass

    def _pass(self) -> int:
        """One pass of the loop; logs when passes start failing and when they recover."""
        try:
            claimed = self.run_once()
        except Exception:
            log.exception("dispatch pass failed", extra={"owner": self.owner})
            self._failing = True
            return 0
        if self._failing:
            log.info("dispatch passes succeed again", extra={"owner": self.owner})
            self._failing = False
        self._counts["claimed"] += claimed
        return claimed

    def dispatch(self, job: Row) -> None:
        """POST one claimed job to /run and record the outcome."""
        job_id = job["id"]
        now = self._clock()
        try:
            payload = build_payload(
                job,
                storage=self.storage,
                master_key=self._master,
                webhook_url=self.settings.callback_url,
                now=now,
            )
        except Exception as exc:
            log.exception("payload build failed", extra={"job_id": job_id})
            self._fail(job_id, f"payload could not be built: {type(exc).__name__}")
            return
        try:
            runpod_id = self.runpod.run(
                payload,
                policy=runpod_policy(job, ttl_s=self.settings.runpod_ttl_s),
                before_retry=lambda: self._renew(job_id),
            )
        except RunpodError as exc:
            reason = str(exc.status_code) if exc.status_code else "network"
            self.metrics.dispatch_errors.labels(reason).inc()
            log.warning("dispatch failed", extra={"job_id": job_id, "error": str(exc)})
            self._fail(job_id, f"Runpod /run failed: {exc}")
            return
        row = jobqueue.mark_running(
            self.db, job_id, owner=self.owner, runpod_job_id=runpod_id, now=self._clock()
        )
        if row is None:
            self._left_dispatching(job, runpod_id)
            return
        log.info("job running", extra={"job_id": job_id, "runpod_job_id": runpod_id})

    def _left_dispatching(self, job: Row, runpod_id: str) -> None:
        """/run accepted the job, but it had left DISPATCHING meanwhile.

        Most often its own callback beat us here (a fast worker): the run is done, so it is
        recorded, not cancelled. Otherwise the job was cancelled, or re-queued after its lease
        expired, and this run is a stray: cancel it on Runpod.
        """
        job_id = job["id"]
        ids = {"job_id": job_id, "runpod_job_id": runpod_id}
        if jobqueue.adopt_finished_run(
            self.db, job_id, runpod_job_id=runpod_id, attempts=job["attempts"]
        ):
            log.info("job finished before its dispatch was recorded", extra=ids)
            return
        status = jobqueue.status_of(self.db, job_id)
        log.warning(
            "job left DISPATCHING during /run; cancelling the stray run",
            extra={**ids, "status": status},
        )
        try:
            self.runpod.cancel(runpod_id, job_id=job_id)
        except RunpodError as exc:
            log.warning("cancel failed", extra={**ids, "error": str(exc)})

    def _renew(self, job_id: str) -> bool:
        now = self._clock()
        return jobqueue.renew_lease(
            self.db, job_id, owner=self.owner, until=now + self.settings.lease_s, now=now
        )

    def _fail(self, job_id: str, message: str) -> None:
        with self.db.transaction() as tx:
            finished = jobs.fail(
                tx,
                job_id,
                code=ControlErrorCode.DISPATCH_FAILED,
                message=message,
                now=self._clock(),
                source="dispatcher",
                only_from=(Status.DISPATCHING,),
                lease_owner=self.owner,
            )
        if finished is not None:
            self._finished(finished)

    def _finished(self, finished: Finished) -> None:
        self.metrics.observe_finished(finished.row, finished.settled)
