"""RunpodClient against the fake endpoint over loopback HTTP."""

from __future__ import annotations

import random

import pytest

from api_stub.runpod_client import RunpodClient, RunpodError
from api_stub.testing.fake_runpod import FakeRunpod


def _client(
    url: str,
    *,
    key: str | None = "rp-test-key",
    sleeps: list[float] | None = None,
    **kwargs: object,
) -> RunpodClient:
    recorded = sleeps if sleeps is not None else []
    return RunpodClient(
        url,
        api_key=key,
        backoff_s=0.2,
        sleep=recorded.append,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


def test_run_status_cancel_shapes(fake: FakeRunpod) -> None:
    client = _client(str(fake.url))
    runpod_id = client.run({"job_id": "x"}, policy={"executionTimeout": 1000})
    assert runpod_id.startswith("fake-")
    state = client.status(runpod_id)
    assert state.status in ("IN_QUEUE", "IN_PROGRESS")
    assert state.delay_ms == 5 and state.execution_ms == 20
    assert client.cancel(runpod_id) is True
    assert client.status(runpod_id).status == "CANCELLED"
    client.close()


def test_status_accepts_post_for_the_local_api(fake: FakeRunpod) -> None:
    client = _client(str(fake.url), status_method="POST")
    runpod_id = client.run({"job_id": "x"})
    assert client.status(runpod_id).id == runpod_id
    client.close()


def test_unknown_job_is_unknown_not_an_error(fake: FakeRunpod) -> None:
    client = _client(str(fake.url))
    assert client.status("nope").status == "UNKNOWN"
    assert client.cancel("nope") is False
    client.close()


def test_wrong_key_is_not_retried(fake: FakeRunpod) -> None:
    client = _client(str(fake.url), key="bad")
    with pytest.raises(RunpodError) as caught:
        client.run({"job_id": "x"})
    assert caught.value.status_code == 401 and not caught.value.retryable
    assert fake.run_calls == 1
    client.close()


def test_backoff_grows_with_full_jitter(fake: FakeRunpod) -> None:
    sleeps: list[float] = []
    client = _client(str(fake.url), sleeps=sleeps, attempts=4)
    fake.refuse_next_runs(503, 503, 503)
    client.run({"job_id": "x"})
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= 0.2 * 2 ** (attempt - 1)
    assert client.retries == 3
    client.close()


def test_retry_after_is_honoured(fake: FakeRunpod) -> None:
    sleeps: list[float] = []
    client = _client(str(fake.url), sleeps=sleeps, attempts=2)
    fake.refuse_next_runs(429, retry_after=3)
    client.run({"job_id": "x"})
    assert sleeps == [3.0]  # longer than any jitter of a 0.2 s backoff
    client.close()


def test_network_errors_are_retried_then_raised() -> None:
    sleeps: list[float] = []
    client = _client("http://127.0.0.1:9", sleeps=sleeps, attempts=3, timeout_s=1)
    with pytest.raises(RunpodError) as caught:
        client.run({"job_id": "x"})
    assert caught.value.retryable
    assert len(sleeps) == 2
    client.close()


def test_before_retry_can_abandon(fake: FakeRunpod) -> None:
    client = _client(str(fake.url), attempts=3)
    fake.refuse_next_runs(503, 503)
    with pytest.raises(RunpodError):
        client.run({"job_id": "x"}, before_retry=lambda: False)
    assert fake.run_calls == 1
    client.close()
