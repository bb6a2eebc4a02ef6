"""The dispatcher and the reconciler say what they are doing: their settings on start (no
secret value ever), a line per change of state, and why a dispatched job is not marked
RUNNING."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from api_helpers import MASTER, build_dispatcher, close_dispatcher, job_row, make_jobs

from api_stub import jobqueue, jobs
from api_stub.auth import NewUser
from api_stub.db import Database
from api_stub.dispatcher import Dispatcher
from api_stub.logs import JsonFormatter
from api_stub.reconciler import Reconciler
from api_stub.runpod_client import RunpodClient
from api_stub.services import make_runpod, make_storage
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import FakeRunpod
from handler.contract import JobResult

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "database_password": "pg-pass-S3CRET",
    "runpod_api_key": "rp-key-S3CRET",
    "callback_master_key": "cmk-S3CRET-" + "k" * 40,
    "storage_signing_key": "ssk-S3CRET-signing",
    "s3_secret_access_key": "s3-S3CRET-access",
    "webhook_secret": base64.b64encode(b"whsec-S3CRET-" + b"w" * 24).decode(),
}


@pytest.fixture
def secret_settings(settings_factory: Callable[..., ApiSettings]) -> ApiSettings:
    """Settings holding a secret in every secret-bearing variable (the database the test
    really uses is passed separately, so DATABASE_URL here only has to be logged)."""
    return settings_factory(
        f"postgresql://simplypng:{SECRETS['database_password']}@db.internal/prod",
        runpod_api_key=SECRETS["runpod_api_key"],
        callback_master_key=SECRETS["callback_master_key"],
        storage_signing_key=SECRETS["storage_signing_key"],
        s3_secret_access_key=SECRETS["s3_secret_access_key"],
        webhook_secrets=f"whsec_{SECRETS['webhook_secret']}",
    )


def _lines(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


@contextmanager
def _dispatcher(db: Database, settings: ApiSettings, **extra: Any) -> Iterator[Dispatcher]:
    """A Dispatcher on `db` with the settings' own Runpod client, closed afterwards."""
    dispatcher = build_dispatcher(db, settings, **extra)
    try:
        yield dispatcher
    finally:
        close_dispatcher(dispatcher)


def _stopped() -> threading.Event:
    stop = threading.Event()
    stop.set()
    return stop


def test_dispatcher_logs_its_settings_on_start_and_stop_without_secrets(
    secret_settings: ApiSettings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        _dispatcher(db, secret_settings, owner="d-logs") as dispatcher,
        caplog.at_level(logging.INFO, logger="api_stub"),
    ):
        dispatcher.run_forever(_stopped())
    assert _messages(caplog, "api_stub.dispatcher") == ["dispatcher started", "dispatcher stopped"]
    started = caplog.records[0]
    logged: dict[str, Any] = started.settings  # type: ignore[attr-defined]
    assert logged["max_inflight"] == secret_settings.max_inflight
    assert logged["lease_s"] == secret_settings.lease_s
    assert logged["runpod_api_key"] == logged["callback_master_key"] == "***"
    assert logged["database_url"] == "postgresql://simplypng:***@db.internal/prod"
    assert started.owner == "d-logs"  # type: ignore[attr-defined]
    text = _lines(caplog)
    for name, value in SECRETS.items():
        assert value not in text, name


def test_reconciler_logs_its_settings_on_start_and_stop_without_secrets(
    secret_settings: ApiSettings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    reconciler = Reconciler(db=db, runpod=make_runpod(secret_settings), settings=secret_settings)
    with caplog.at_level(logging.INFO, logger="api_stub"):
        reconciler.run_forever(_stopped())
    reconciler.close()
    reconciler.runpod.close()
    assert _messages(caplog, "api_stub.reconciler") == ["reconciler started", "reconciler stopped"]
    logged: dict[str, Any] = caplog.records[0].settings  # type: ignore[attr-defined]
    assert logged["reconcile_after_s"] == secret_settings.reconcile_after_s
    assert logged["runpod_api_key"] == "***"
    text = _lines(caplog)
    for name, value in SECRETS.items():
        assert value not in text, name


def _scripted_passes(outcomes: list[int | None], stop: threading.Event) -> Callable[[], int]:
    """run_once stand-in: None raises, a number is claimed; stops after the last outcome."""

    def run_once() -> int:
        outcome = outcomes.pop(0)
        if not outcomes:
            stop.set()
        if outcome is None:
            raise RuntimeError("database unavailable")
        return outcome

    return run_once


@pytest.fixture
def quick_settings(make_settings: Callable[..., ApiSettings]) -> ApiSettings:
    return make_settings(poll_s=0.001)  # the idle wait between passes; nothing waits on it


def test_dispatcher_logs_failing_and_recovered_passes_once_each(
    quick_settings: ApiSettings, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")  # SQLite: the loop polls, no LISTEN
    with _dispatcher(db, quick_settings) as dispatcher:
        stop = threading.Event()
        dispatcher.run_once = _scripted_passes([None, None, 0, 0, None, 3], stop)  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="api_stub"):
            dispatcher.run_forever(stop)
    db.close()
    assert _messages(caplog, "api_stub.dispatcher") == [
        "dispatcher started",
        "dispatch pass failed",
        "dispatch pass failed",
        "dispatch passes succeed again",
        "dispatch pass failed",
        "dispatch passes succeed again",
        "dispatcher stopped",
    ]
    assert caplog.records[-1].claimed == 3  # type: ignore[attr-defined]


def test_dispatcher_logs_a_lost_connection_and_the_reconnect(
    quick_settings: ApiSettings, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    connects: list[str] = ["fail", "ok"]

    @contextmanager
    def listen(channel: str) -> Iterator[None]:
        if connects.pop(0) == "fail":
            raise ConnectionError("the database restarted")
        yield None  # SQLite's answer: no LISTEN connection, the loop polls

    db.listen = listen  # type: ignore[method-assign]
    with _dispatcher(db, quick_settings) as dispatcher:
        stop = threading.Event()
        dispatcher.run_once = _scripted_passes([0], stop)  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="api_stub"):
            dispatcher.run_forever(stop)
    db.close()
    assert _messages(caplog, "api_stub.dispatcher") == [
        "dispatcher started",
        "dispatcher loop failed; reconnecting",
        "dispatcher reconnected",
        "dispatcher stopped",
    ]


def test_reconciler_logs_failing_and_recovered_passes_once_each(
    quick_settings: ApiSettings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    reconciler = Reconciler(db=db, runpod=make_runpod(quick_settings), settings=quick_settings)
    stop = threading.Event()
    reconciler.run_once = _scripted_passes([None, 2, 0, None, 1], stop)  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="api_stub"):
        reconciler.run_forever(stop)
    reconciler.close()
    reconciler.runpod.close()
    assert _messages(caplog, "api_stub.reconciler") == [
        "reconciler started",
        "reconcile pass failed",
        "reconcile passes succeed again",
        "reconcile pass failed",
        "reconcile passes succeed again",
        "reconciler stopped",
    ]
    assert caplog.records[-1].checked == 3  # type: ignore[attr-defined]


# --- a job that leaves DISPATCHING while /run is in flight ------------------------------------


class CallbackFirst(RunpodClient):
    """/run, then `meanwhile(job_id)` before /run's answer reaches the dispatcher: the worker's
    callback landing first, a user's cancel, an expired lease."""

    meanwhile: Callable[[str], None]

    def run(self, payload: dict[str, Any], **kwargs: Any) -> str:
        runpod_id = super().run(payload, **kwargs)
        self.meanwhile(str(payload["job_id"]))
        return runpod_id


@pytest.fixture
def racing(
    make_settings: Callable[..., ApiSettings], db: Database, fake: FakeRunpod
) -> Iterator[tuple[Dispatcher, CallbackFirst]]:
    settings = make_settings(runpod_endpoint_url=fake.url, runpod_api_key="rp-test-key")
    client = CallbackFirst(fake.url, api_key="rp-test-key", attempts=1, backoff_s=0)
    dispatcher = Dispatcher(
        db=db,
        runpod=client,
        storage=make_storage(settings),
        settings=settings,
        master_key=MASTER,
    )
    yield dispatcher, client
    dispatcher.close()
    client.close()


def _callback(db: Database, job_id: str) -> None:
    result = JobResult.model_validate(
        {
            "job_id": job_id,
            "status": "SUCCEEDED",
            "outputs": [],
            "metrics": {"gpu_seconds": 1.0, "worker_version": "test-1"},
        }
    )
    with db.transaction() as tx:
        assert jobs.apply_result(tx, job_id, result, now=time.time(), source="webhook")


def test_a_run_whose_callback_came_first_is_recorded_not_cancelled(
    racing: tuple[Dispatcher, CallbackFirst],
    db: Database,
    fake: FakeRunpod,
    alice: NewUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher, client = racing
    client.meanwhile = lambda job_id: _callback(db, job_id)
    [job_id] = make_jobs(db, alice, 1)
    with caplog.at_level(logging.INFO, logger="api_stub.dispatcher"):
        assert dispatcher.run_once() == 1
    row = job_row(db, job_id)
    [run] = fake.runs_of(job_id)
    assert row["status"] == "SUCCEEDED" and row["runpod_job_id"] == run.id
    assert fake.cancel_calls == 0  # the old code cancelled the finished run, as "lost"
    assert _messages(caplog, "api_stub.dispatcher") == [
        "job finished before its dispatch was recorded"
    ]
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_a_run_whose_job_was_requeued_meanwhile_is_cancelled_as_a_stray(
    racing: tuple[Dispatcher, CallbackFirst],
    db: Database,
    fake: FakeRunpod,
    alice: NewUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher, client = racing
    # The lease expires during /run and the reaper hands the job back to the jobqueue.
    client.meanwhile = lambda job_id: (
        jobqueue.reap(db, now=time.time() + 3600, max_claims=5) and None
    )
    [job_id] = make_jobs(db, alice, 1)
    with caplog.at_level(logging.INFO, logger="api_stub.dispatcher"):
        dispatcher.run_once()
    assert job_row(db, job_id)["status"] == "QUEUED"
    assert fake.cancel_calls == 1
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage() == "job left DISPATCHING during /run; cancelling the stray run"
    assert record.status == "QUEUED" and record.job_id == job_id  # type: ignore[attr-defined]


# --- the processes themselves -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dispatcher", "reconciler"])
def test_the_process_logs_start_stop_request_and_stop_as_json_without_secrets(
    kind: str, db_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": db_url,
        "RUNPOD_ENDPOINT_URL": "http://127.0.0.1:9",
        "RUNPOD_API_KEY": SECRETS["runpod_api_key"],
        "CALLBACK_MASTER_KEY": SECRETS["callback_master_key"],
        "STORAGE_SIGNING_KEY": SECRETS["storage_signing_key"],
        "LOCAL_STORAGE_DIR": str(tmp_path),
        "POLL_S": "0.05",
        "LOG_LEVEL": "INFO",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api_stub", kind],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a hung process fails the test, not the run
    watchdog.start()
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the process has said it started
        assert json.loads(first)["msg"] == f"{kind} started", first
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait() == 0
    finally:
        watchdog.cancel()
    lines = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]
    messages = [line["msg"] for line in lines]
    assert messages[0] == f"{kind} started" and messages[-1] == f"{kind} stopped"
    assert {"msg": f"{kind} stopping", "signal": "SIGTERM"}.items() <= next(
        line for line in lines if line["msg"] == f"{kind} stopping"
    ).items()
    assert lines[0]["settings"]["runpod_api_key"] == "***"
    output = first + rest
    for name, value in SECRETS.items():
        assert value not in output, name
