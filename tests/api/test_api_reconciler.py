"""Reconciler: recovers lost callbacks through /status and fails jobs Runpod gave up on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from api_helpers import MASTER, balance, job_row, ledger, make_jobs

from api_stub import jobqueue
from api_stub.auth import NewUser
from api_stub.db import Database
from api_stub.dispatcher import Dispatcher
from api_stub.reconciler import Reconciler
from api_stub.services import make_runpod, make_storage
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import FakeRunpod


class Parts:
    def __init__(self, settings: ApiSettings, db: Database, clock: list[float]):
        self.settings = settings
        self.clock = clock
        # One clock for both: running_at is then exactly what the test's arithmetic assumes.
        self.dispatcher = Dispatcher(
            db=db,
            runpod=make_runpod(settings),
            storage=make_storage(settings),
            settings=settings,
            master_key=MASTER,
            clock=lambda: clock[0],
        )
        self.reconciler = Reconciler(
            db=db, runpod=make_runpod(settings), settings=settings, clock=lambda: clock[0]
        )

    def close(self) -> None:
        for part in (self.dispatcher, self.reconciler):
            part.close()
            part.runpod.close()


@pytest.fixture
def parts(
    make_settings: Callable[..., ApiSettings], db: Database, fake: FakeRunpod
) -> Iterator[Parts]:
    settings = make_settings(
        runpod_endpoint_url=fake.url,
        runpod_api_key="rp-test-key",
        reconcile_after_s=60,
        reconcile_every_s=30,
        lost_after_s=1800,
        runpod_ttl_s=600,
    )
    made = Parts(settings, db, [time.time()])
    yield made
    made.close()


def _dispatch(parts: Parts, db: Database, fake: FakeRunpod, user: NewUser, behaviour: str) -> str:
    [job_id] = make_jobs(db, user, 1, timeout_s=60)
    fake.plan[job_id] = behaviour
    parts.dispatcher.run_once()
    assert job_row(db, job_id)["status"] == "RUNNING"
    return job_id


def _settled(fake: FakeRunpod, job_id: str) -> bool:
    return all(run.status not in ("IN_QUEUE", "IN_PROGRESS") for run in fake.runs_of(job_id))


def _wait_settled(fake: FakeRunpod, job_id: str) -> None:
    deadline = time.monotonic() + 5
    while not _settled(fake, job_id):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_lost_callback_is_recovered_from_status(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    job_id = _dispatch(parts, db, fake, alice, "lose_callback")
    _wait_settled(fake, job_id)
    assert parts.reconciler.run_once() == 0  # not overdue yet
    parts.clock[0] += 61
    assert parts.reconciler.run_once() == 1
    row = job_row(db, job_id)
    assert row["status"] == "SUCCEEDED" and row["result_source"] == "reconciler"
    assert row["gpu_seconds"] == 0.25
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, alice.user.id) == (99, 0)
    parts.clock[0] += 61
    assert parts.reconciler.run_once() == 0  # terminal jobs are never checked again


def test_a_failed_result_in_status_output_is_applied(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    job_id = _dispatch(parts, db, fake, alice, "fail")
    _wait_settled(fake, job_id)
    # The callback went to http://testserver, which does not exist: it was lost.
    parts.clock[0] += 61
    parts.reconciler.run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "NODE_ERROR"
    assert ledger(db, job_id) == ["hold", "release"]


def test_runpod_failure_fails_the_job(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    job_id = _dispatch(parts, db, fake, alice, "runpod_fail")
    _wait_settled(fake, job_id)
    parts.clock[0] += 61
    parts.reconciler.run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "RUNPOD_FAILED"
    assert balance(db, alice.user.id) == (100, 0)


def test_unknown_job_fails_only_after_expiry(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    job_id = _dispatch(parts, db, fake, alice, "lose_callback")
    _wait_settled(fake, job_id)
    fake.forget(job_row(db, job_id)["runpod_job_id"])
    parts.clock[0] += 61
    parts.reconciler.run_once()
    assert job_row(db, job_id)["status"] == "RUNNING"  # unknown, but not yet expired
    parts.clock[0] += 1800
    parts.reconciler.run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "JOB_LOST"
    assert ledger(db, job_id) == ["hold", "release"]


def test_a_job_stuck_in_runpod_is_cancelled_and_failed(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    job_id = _dispatch(parts, db, fake, alice, "hang")
    parts.clock[0] += 61
    parts.reconciler.run_once()
    assert job_row(db, job_id)["status"] == "RUNNING"
    parts.clock[0] += 600 + 60 + 61
    parts.reconciler.run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "RUNPOD_TIMED_OUT"
    assert fake.cancel_calls == 1


def test_checks_are_spaced_by_reconcile_every(
    parts: Parts, db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    _dispatch(parts, db, fake, alice, "hang")
    parts.clock[0] += 61
    assert parts.reconciler.run_once() == 1
    parts.clock[0] += 10
    assert parts.reconciler.run_once() == 0
    parts.clock[0] += 25
    assert parts.reconciler.run_once() == 1
    assert fake.status_calls == 2


def test_requeued_leases_of_a_dead_dispatcher_are_logged_with_their_job_ids(
    parts: Parts, db: Database, alice: NewUser, caplog: pytest.LogCaptureFixture
) -> None:
    ids = make_jobs(db, alice, 2)
    claim = jobqueue.claim(
        db, owner="dead", limit=2, max_inflight=10, lease_s=60, max_claims=5, now=parts.clock[0]
    )
    assert len(claim.jobs) == 2
    parts.clock[0] += 61  # the dead dispatcher's leases have expired
    with caplog.at_level(logging.INFO, logger="api_stub.reconciler"):
        parts.reconciler.run_once()
    [record] = [r for r in caplog.records if r.getMessage() == "leases expired; jobs re-queued"]
    assert record.levelno == logging.WARNING
    assert sorted(record.job_ids) == sorted(ids)  # type: ignore[attr-defined]
    assert {job_row(db, job_id)["status"] for job_id in ids} == {"QUEUED"}


def test_a_job_whose_dispatchers_keep_dying_is_failed_and_logged(
    parts: Parts, db: Database, alice: NewUser, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    claims = parts.settings.dispatch_max_claims
    for _ in range(claims):  # each claim dies at once: its lease is already over
        jobqueue.claim(
            db,
            owner="dead",
            limit=1,
            max_inflight=10,
            lease_s=-1,
            max_claims=99,
            now=parts.clock[0],
        )
    with caplog.at_level(logging.INFO, logger="api_stub.reconciler"):
        parts.reconciler.run_once()
    assert job_row(db, job_id)["status"] == "FAILED"
    [record] = [r for r in caplog.records if r.getMessage() == "dispatch abandoned; job failed"]
    assert record.job_id == job_id  # type: ignore[attr-defined]
    assert record.attempts == claims  # type: ignore[attr-defined]


def test_worker_failure_codes_are_read_from_runpod_errors() -> None:
    from api_stub.reconciler import worker_failure

    assert worker_failure("NODE_ERROR: Node 5 (SaveImage) failed") == (
        "NODE_ERROR",
        "Node 5 (SaveImage) failed",
    )
    assert worker_failure("Traceback (most recent call last): ...") is None
    assert worker_failure("EVIL_CODE: x") is None
    assert worker_failure({"error": "x"}) is None
