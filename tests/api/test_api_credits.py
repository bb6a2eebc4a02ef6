"""Credits and the rate limiter under concurrency, straight against the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from api_helpers import balance, make_jobs

from api_stub import credits, jobs, ratelimit
from api_stub.auth import NewUser
from api_stub.db import Database
from api_stub.submit import SubmitError


def _parallel(count: int, work: Callable[[], None]) -> None:
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_fifty_concurrent_holds_never_overdraw(
    db: Database, new_user: Callable[..., NewUser]
) -> None:
    user = new_user(10)
    outcomes: list[str] = []

    def submit_one() -> None:
        try:
            make_jobs(db, user, 1)
            outcomes.append("held")
        except SubmitError as exc:
            outcomes.append(str(exc.status))

    _parallel(50, submit_one)
    assert outcomes.count("held") == 10 and outcomes.count("402") == 40
    assert balance(db, user.user.id) == (0, 10)


def test_settlement_is_exactly_once_under_races(db: Database, alice: NewUser) -> None:
    [job_id] = make_jobs(db, alice, 1)
    settled: list[int | None] = []

    def settle() -> None:
        with db.transaction() as tx:
            settled.append(credits.settle(tx, job_id, "capture", now=time.time()))

    _parallel(10, settle)
    assert sorted(settled, key=lambda v: v is None) == [1] + [None] * 9
    with db.transaction() as tx:
        assert credits.settle(tx, job_id, "release", now=time.time()) is None
    assert balance(db, alice.user.id) == (99, 0)


def test_concurrent_terminal_transitions_apply_once(db: Database, alice: NewUser) -> None:
    from handler.contract import JobResult

    [job_id] = make_jobs(db, alice, 1)
    ok = JobResult.model_validate(
        {"job_id": job_id, "status": "SUCCEEDED", "metrics": {"worker_version": "t"}}
    )
    bad = ok.model_copy(update={"status": "FAILED", "error": "late"})
    applied: list[str] = []

    def apply(result: JobResult) -> None:
        with db.transaction() as tx:
            if jobs.apply_result(tx, job_id, result, now=time.time(), source="test"):
                applied.append(result.status)

    barrier = threading.Barrier(8)

    def racer(i: int) -> None:
        barrier.wait()
        apply(ok if i % 2 else bad)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(applied) == 1
    expected = (100, 0) if applied == ["FAILED"] else (99, 0)
    assert balance(db, alice.user.id) == expected


def test_token_bucket_is_exact_under_concurrency(db: Database, alice: NewUser) -> None:
    now = time.time()
    allowed: list[bool] = []

    def take() -> None:
        decision = ratelimit.take(db, alice.user.id, clock=lambda: now, capacity=10, per_s=0.001)
        allowed.append(decision.allowed)

    _parallel(30, take)
    assert allowed.count(True) == 10


def _take3(db: Database, user: NewUser, at: float) -> ratelimit.Decision:
    return ratelimit.take(db, user.user.id, clock=lambda: at, capacity=3, per_s=1)


def test_token_bucket_refills(db: Database, alice: NewUser) -> None:
    now = 1000.0
    for _ in range(3):
        assert _take3(db, alice, now).allowed
    denied = _take3(db, alice, now)
    assert not denied.allowed and denied.retry_after_s == 1
    assert _take3(db, alice, now + 1.01).allowed
    assert not _take3(db, alice, now + 1.02).allowed
    # A clock stepping backwards refills nothing.
    assert not _take3(db, alice, now - 100).allowed
