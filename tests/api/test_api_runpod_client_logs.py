"""RunpodClient's warnings about failed or refused attempts name the job they belong to, so
retries can be tied to a job in the logs."""

from __future__ import annotations

import logging
import random

import pytest

from api_stub.runpod_client import RunpodClient, RunpodError
from api_stub.testing.fake_runpod import FakeRunpod

DISCARD = "http://127.0.0.1:9"  # the discard port: nothing listens, every attempt fails
JOB_ID = "0b8f0c2e-3f5e-4a53-9a53-8d1f0b4c2a10"


def _client(url: str, attempts: int = 2) -> RunpodClient:
    return RunpodClient(
        url,
        api_key="rp-test-key",
        attempts=attempts,
        backoff_s=0,
        timeout_s=1,
        sleep=lambda _: None,
        rng=random.Random(7),
    )


def _warnings(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api_stub.runpod_client" and r.msg == message]


def test_failed_run_attempts_carry_the_job_id_of_the_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _client(DISCARD)
    with caplog.at_level(logging.WARNING), pytest.raises(RunpodError):
        client.run({"job_id": JOB_ID, "type": "bg_remove"})
    client.close()
    records = _warnings(caplog, "runpod call failed")
    assert len(records) == 2
    assert all(r.job_id == JOB_ID and r.path == "/run" for r in records)  # type: ignore[attr-defined]


def test_refused_run_attempts_carry_the_job_id(
    fake: FakeRunpod, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(str(fake.url))
    fake.refuse_next_runs(503)
    with caplog.at_level(logging.WARNING):
        client.run({"job_id": JOB_ID})
    client.close()
    (record,) = _warnings(caplog, "runpod call refused")
    assert record.job_id == JOB_ID and record.status == 503  # type: ignore[attr-defined]


@pytest.mark.parametrize("call", ["status", "cancel"])
def test_status_and_cancel_attempts_carry_both_ids(
    call: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(DISCARD)
    with caplog.at_level(logging.WARNING), pytest.raises(RunpodError):
        getattr(client, call)("rp-123", job_id=JOB_ID)
    client.close()
    records = _warnings(caplog, "runpod call failed")
    assert len(records) == 2
    for record in records:
        assert record.job_id == JOB_ID  # type: ignore[attr-defined]
        assert record.runpod_job_id == "rp-123"  # type: ignore[attr-defined]
