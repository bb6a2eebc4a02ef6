"""Dispatcher: claims, MAX_INFLIGHT across dispatchers, /run retries, leases, a killed process."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_helpers import (
    MASTER,
    balance,
    build_dispatcher,
    close_dispatcher,
    job_row,
    ledger,
    make_jobs,
    statuses,
    wait_until,
)

from api_stub import jobqueue, jobs, signing
from api_stub.auth import NewUser, create_user
from api_stub.db import Database
from api_stub.dispatcher import Dispatcher
from api_stub.jobs import Status
from api_stub.services import make_runpod, make_storage
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import FakeRunpod
from handler.contract import parse_payload

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dispatcher_for(
    make_settings: Callable[..., ApiSettings], db: Database, fake: FakeRunpod
) -> Iterator[Callable[..., Dispatcher]]:
    made: list[Dispatcher] = []

    def build(clock: Callable[[], float] = time.time, **overrides: object) -> Dispatcher:
        values = {"runpod_endpoint_url": fake.url, "runpod_api_key": "rp-test-key", **overrides}
        settings = make_settings(**values)
        dispatcher = build_dispatcher(db, settings, owner=f"d{len(made)}", clock=clock)
        made.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in made:
        close_dispatcher(dispatcher)


def test_dispatch_sends_a_valid_payload_and_marks_running(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1, timeout_s=90)
    dispatcher = dispatcher_for()
    assert dispatcher.run_once() == 1
    row = job_row(db, job_id)
    assert row["status"] == "RUNNING" and row["attempts"] == 1
    [sent] = fake.runs_of(job_id)
    assert row["runpod_job_id"] == sent.id
    assert row["running_at"] >= row["dispatched_at"] >= row["created_at"]
    payload = parse_payload(sent.input, max_inputs=8, max_timeout_s=3600)  # the worker's check
    assert payload.type == "bg_remove" and payload.timeout_s == 90
    assert payload.webhook_url == "http://testserver/api/webhooks/runpod"
    assert payload.auth is not None and payload.auth.callback_hmac is not None
    assert base64.b64decode(payload.auth.callback_hmac) == signing.callback_key(MASTER, job_id)
    assert payload.output_prefix is not None
    assert f"/storage/files/outputs/{alice.user.id}/{job_id}/" in payload.output_prefix
    assert "sig=" in payload.output_prefix and "exp=" in payload.output_prefix


def test_upload_keys_become_presigned_input_urls(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    from api_stub.jobs import NewJob
    from api_stub.submit import submit

    key = f"uploads/{alice.user.id}/in.png"
    new = NewJob("bg_remove", {"v": 1}, [{"key": key}], 1, 60)
    [row] = submit(
        db,
        user=alice.user,
        new_jobs=[new],
        now=time.time(),
        idempotency_key=None,
        digest="",
        batch=False,
    ).rows
    dispatcher_for().run_once()
    [sent] = fake.runs_of(row["id"])
    url = sent.input["inputs"][0]["url"]
    assert url.startswith(f"http://testserver/storage/files/{key}?") and "sig=" in url


def test_429_and_5xx_are_retried(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    fake.refuse_next_runs(429, 503)
    dispatcher = dispatcher_for()
    dispatcher.run_once()
    assert job_row(db, job_id)["status"] == "RUNNING"
    assert fake.run_calls == 3
    assert dispatcher.runpod.retries == 2


def test_exhausted_retries_fail_the_job_and_release_credits(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    fake.refuse_next_runs(429, 502, 429)
    dispatcher_for(dispatch_attempts=3).run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "DISPATCH_FAILED"
    assert fake.run_calls == 3
    assert ledger(db, job_id) == ["hold", "release"]
    assert balance(db, alice.user.id) == (100, 0)


def test_client_errors_are_not_retried(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    dispatcher = dispatcher_for(runpod_api_key="wrong-key")
    dispatcher.run_once()
    assert job_row(db, job_id)["status"] == "FAILED"
    assert fake.run_calls == 1


def test_max_inflight_holds_across_concurrent_dispatchers(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    make_jobs(db, alice, 30)
    dispatchers = [dispatcher_for(max_inflight=5, dispatch_batch=4) for _ in range(8)]

    def race() -> None:
        barrier = threading.Barrier(len(dispatchers))

        def one(d: Dispatcher) -> None:
            barrier.wait()
            d.run_once()

        threads = [threading.Thread(target=one, args=(d,)) for d in dispatchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for round_ in range(4):
        race()
        counts = statuses(db)
        assert counts.get("RUNNING") == 5, (round_, counts)
        assert "DISPATCHING" not in counts
        # Every running job finishes; the next race refills exactly five slots.
        with db.transaction(write=False) as tx:
            running = [r["id"] for r in tx.all("SELECT id FROM jobs WHERE status = 'RUNNING'")]
        for job_id in running:
            with db.transaction() as tx:
                jobs.fail(tx, job_id, code="X", message="done", now=time.time(), source="test")
    assert statuses(db) == {"FAILED": 20, "QUEUED": 10}
    assert fake.run_calls == 20


def test_expired_lease_is_requeued_and_dispatched_again(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    now = [time.time()]  # the test's clock: the lease ends when the test says, not the machine
    # A dispatcher claims the job and dies before calling /run.
    claim = jobqueue.claim(
        db, owner="dead", limit=1, max_inflight=10, lease_s=60, max_claims=5, now=now[0]
    )
    assert [r["id"] for r in claim.jobs] == [job_id]
    survivor = dispatcher_for(clock=lambda: now[0])
    now[0] += 59.9
    assert survivor.run_once() == 0  # the lease still holds
    assert job_row(db, job_id)["status"] == "DISPATCHING"
    now[0] += 0.2
    assert survivor.run_once() == 1
    row = job_row(db, job_id)
    assert row["status"] == "RUNNING" and row["attempts"] == 2
    assert ledger(db, job_id) == ["hold"]


def test_a_job_whose_dispatchers_keep_dying_is_failed(
    dispatcher_for: Callable[..., Dispatcher], db: Database, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    for _ in range(2):
        jobqueue.claim(
            db, owner="dead", limit=1, max_inflight=10, lease_s=-1, max_claims=2, now=time.time()
        )
    dispatcher_for(dispatch_max_claims=2).run_once()
    row = job_row(db, job_id)
    assert row["status"] == "FAILED" and row["error_code"] == "DISPATCH_FAILED"
    assert balance(db, alice.user.id) == (100, 0)


def test_a_job_cancelled_during_run_is_cancelled_on_runpod(
    dispatcher_for: Callable[..., Dispatcher], db: Database, fake: FakeRunpod, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    dispatcher = dispatcher_for()
    claim = jobqueue.claim(
        db,
        owner=dispatcher.owner,
        limit=1,
        max_inflight=9,
        lease_s=60,
        max_claims=5,
        now=time.time(),
    )
    with db.transaction() as tx:
        jobs.fail(
            tx,
            job_id,
            code="CANCELLED",
            message="user",
            now=time.time(),
            source="user",
            status=Status.CANCELLED,
        )
    dispatcher.dispatch(claim.jobs[0])
    assert fake.cancel_calls == 1
    assert job_row(db, job_id)["status"] == "CANCELLED"
    assert ledger(db, job_id) == ["hold", "release"]


def test_killed_dispatcher_process_jobs_are_requeued(
    db_url: str,
    db: Database,
    fake: FakeRunpod,
    alice: NewUser,
    tmp_path: Path,
    dispatcher_for: Callable[..., Dispatcher],
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    fake.hang_next_runs(3)  # every attempt of the doomed dispatcher hangs
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "RUNPOD_ENDPOINT_URL": str(fake.url),
        "RUNPOD_API_KEY": "rp-test-key",
        "CALLBACK_MASTER_KEY": MASTER,
        "LOCAL_STORAGE_DIR": str(tmp_path),
        # The doomed dispatcher stays inside its first /run (held by the fake) until killed.
        "LEASE_S": "120",
        "RUNPOD_TIMEOUT_S": "60",
        "POLL_S": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api_stub", "dispatcher"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: fake.run_calls >= 1, timeout=20)
        assert job_row(db, job_id)["status"] == "DISPATCHING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    fake.release_runs()
    # The survivor's clock is past the dead one's lease: no waiting for it to run out.
    survivor = dispatcher_for(clock=lambda: time.time() + 3600)
    assert survivor.run_once() == 1
    row = job_row(db, job_id)
    assert row["status"] == "RUNNING" and row["attempts"] == 2
    assert row["lease_owner"] is None


@pytest.mark.postgres
def test_notify_wakes_a_waiting_dispatcher(
    pg_url: str, settings_factory: Callable[..., ApiSettings], fake: FakeRunpod
) -> None:
    # The fallback poll is an hour away: only the NOTIFY can wake the dispatcher in time.
    settings = settings_factory(
        pg_url, runpod_endpoint_url=fake.url, runpod_api_key="rp-test-key", poll_s=3600
    )
    database = Database(pg_url, pool_size=4)
    dispatcher = Dispatcher(
        db=database,
        runpod=make_runpod(settings),
        storage=make_storage(settings),
        settings=settings,
        master_key=MASTER,
    )
    stop = threading.Event()
    first_pass = threading.Event()
    run_once = dispatcher.run_once

    def run_once_then_tell() -> int:
        claimed = run_once()
        first_pass.set()  # LISTEN was set up before this pass: a later NOTIFY is not missed
        return claimed

    dispatcher.run_once = run_once_then_tell  # type: ignore[method-assign]
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,))
    try:
        user = create_user(database, name="u", credits_granted=10, now=time.time())
        thread.start()
        assert first_pass.wait(timeout=60)
        [job_id] = make_jobs(database, user, 1)
        wait_until(lambda: job_row(database, job_id)["status"] == "RUNNING", timeout=60)
    finally:
        stop.set()
        with database.transaction() as tx:  # wake it so that it sees `stop`
            tx.notify(jobs.NOTIFY_CHANNEL)
        thread.join(timeout=10)
        dispatcher.close()
        dispatcher.runpod.close()
        database.close()
