"""The whole loop over real HTTP: API, dispatchers and reconciler against the fake Runpod
endpoint and fake worker, which fetch inputs, upload outputs and post signed callbacks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import JOB, auth, balance, ledger, wait_until

from api_stub.audit import audit
from api_stub.auth import NewUser, create_user
from api_stub.testing.fake_runpod import FakeRunpod, tiny_png
from api_stub.testing.stack import Stack, start_stack

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture
def stack_for(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    started: list[Stack] = []

    def start(
        *,
        dispatchers: int = 2,
        fake: FakeRunpod | None = None,
        paused: bool = False,
        **settings: Any,
    ) -> Stack:
        stack = start_stack(
            paused=paused,
            database_url=db_url,
            storage_dir=tmp_path / "storage",
            dispatchers=dispatchers,
            fake=fake or FakeRunpod(api_key="rp-key"),
            settings={"runpod_api_key": "rp-key", **settings},
        )
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def _user(stack: Stack, credits_granted: int = 20) -> tuple[NewUser, httpx.Client]:
    user = create_user(
        stack.services.db, name="u", credits_granted=credits_granted, now=time.time()
    )
    return user, httpx.Client(base_url=stack.url, headers=auth(user), timeout=10)


def _finish(http: httpx.Client, job_id: str, timeout: float = 10) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(http.get(f"/api/jobs/{job_id}").json())
        return seen["status"] in TERMINAL

    wait_until(done, timeout=timeout, every=0.05)
    return seen


def _job_body(http: httpx.Client) -> dict[str, Any]:
    """A job whose input is a real upload (the fake worker fetches it)."""
    return {**JOB, "inputs": [_upload(http)]}


def _upload(http: httpx.Client) -> dict[str, str]:
    grant = http.post("/api/uploads", json={"content_type": "image/png"}).json()
    files = {"file": ("in.png", tiny_png(), "image/png")}
    response = httpx.post(grant["url"], data=grant["fields"], files=files)
    assert response.status_code == 204, response.text
    return grant["input"]  # type: ignore[no-any-return]


def test_upload_process_download(stack_for: Callable[..., Stack]) -> None:
    stack = stack_for()
    user, http = _user(stack)
    item = _upload(http)
    created = http.post("/api/jobs", json={**JOB, "inputs": [item]})
    assert created.status_code == 201
    job = _finish(http, created.json()["id"])
    assert job["status"] == "SUCCEEDED", job
    [output] = job["outputs"]
    image = httpx.get(output["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert hashlib.sha256(image.content).hexdigest() == output["sha256"]
    assert (
        job["timings"]["queue_s"] is not None
        and job["timings"]["total_s"] >= job["timings"]["queue_s"]
    )
    assert job["models"] == [{"name": "fake-model", "version": "1", "sha256": None}]
    assert balance(stack.services.db, user.user.id) == (19, 0)
    # Another user cannot read the job, and the signed URL does not open other objects.
    _, stranger = _user(stack)
    assert stranger.get(f"/api/jobs/{job['id']}").status_code == 404
    other_key = output["url"].replace("out-0.png", "out-1.png")
    assert httpx.get(other_key).status_code == 403


def test_failure_paths_settle_credits_exactly_once(stack_for: Callable[..., Stack]) -> None:
    fake = FakeRunpod(api_key="rp-key")
    stack = stack_for(fake=fake, paused=True, reconcile_after_s=0.3, reconcile_every_s=0.3)
    user, http = _user(stack)
    body = _job_body(http)
    plan = ["fail", "duplicate", "late_failure", "lose_callback", "bad_signature", "runpod_fail"]
    ids = {}
    for behaviour in plan:
        job_id = http.post("/api/jobs", json=body).json()["id"]
        ids[behaviour] = job_id
    for behaviour, job_id in ids.items():
        fake.plan[job_id] = behaviour
    stack.resume()
    results = {b: _finish(http, job_id) for b, job_id in ids.items()}
    db = stack.services.db
    assert results["fail"]["status"] == "FAILED"
    assert results["fail"]["error"]["code"] == "NODE_ERROR"
    assert results["duplicate"]["status"] == "SUCCEEDED"
    assert results["late_failure"]["status"] == "SUCCEEDED"
    assert results["lose_callback"]["status"] == "SUCCEEDED"  # recovered through /status
    assert results["bad_signature"]["status"] == "SUCCEEDED"  # callback refused, /status applied
    assert results["runpod_fail"]["error"]["code"] == "RUNPOD_FAILED"
    wait_until(lambda: len(fake.callbacks) >= 7)
    refused = [c.http_status for c in fake.callbacks if c.job_id == ids["bad_signature"]]
    assert refused == [401]
    for behaviour in ("duplicate", "late_failure", "lose_callback", "bad_signature"):
        assert ledger(db, ids[behaviour]) == ["hold", "capture"], behaviour
    for behaviour in ("fail", "runpod_fail"):
        assert ledger(db, ids[behaviour]) == ["hold", "release"], behaviour
    assert balance(db, user.user.id) == (16, 0)
    report = audit(db)
    assert report.ok, report.problems


def test_runpod_429_on_run_is_retried(stack_for: Callable[..., Stack]) -> None:
    fake = FakeRunpod(api_key="rp-key")
    fake.refuse_next_runs(429, 429)
    stack = stack_for(fake=fake, dispatchers=1)
    _, http = _user(stack)
    job = _finish(http, http.post("/api/jobs", json=_job_body(http)).json()["id"])
    assert job["status"] == "SUCCEEDED"
    assert fake.run_calls == 3


def test_cancel_a_running_job_calls_runpod_cancel(stack_for: Callable[..., Stack]) -> None:
    fake = FakeRunpod(api_key="rp-key", default="hang")
    stack = stack_for(fake=fake)
    user, http = _user(stack)
    job_id = http.post("/api/jobs", json=_job_body(http)).json()["id"]
    wait_until(lambda: http.get(f"/api/jobs/{job_id}").json()["status"] == "RUNNING")
    response = http.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    assert fake.cancel_calls == 1
    assert [run.status for run in fake.runs_of(job_id)] == ["CANCELLED"]
    assert balance(stack.services.db, user.user.id) == (20, 0)


def test_max_inflight_bounds_runpod_concurrency(stack_for: Callable[..., Stack]) -> None:
    fake = FakeRunpod(api_key="rp-key", delay_s=0.05)
    stack = stack_for(fake=fake, dispatchers=3, max_inflight=3)
    _, http = _user(stack, credits_granted=40)
    response = http.post("/api/jobs/batch", json={"jobs": [_job_body(http)] * 24})
    assert response.status_code == 201
    for job in response.json()["jobs"]:
        assert _finish(http, job["id"], timeout=20)["status"] == "SUCCEEDED"
    assert 1 <= fake.max_running <= 3
    report = audit(stack.services.db)
    assert report.ok, report.problems
    metrics = http.get("/metrics").text
    assert 'simplypng_jobs_finished_total{status="SUCCEEDED",type="bg_remove"} 24.0' in metrics
    assert "simplypng_jobs_inflight 0.0" in metrics
    assert "simplypng_job_success_ratio 1.0" in metrics
    assert "simplypng_job_queue_latency_seconds_count 24.0" in metrics


def test_runpods_local_api_runs_jobs_through_the_reconciler(
    stack_for: Callable[..., Stack],
) -> None:
    """The shape of `python -m handler --rp_serve_api`: /run only stores the job, POST /status
    runs it; so the reconciler polls at once, and the callback lands during that call."""
    fake = FakeRunpod(api_key="rp-key", local_api=True)
    stack = stack_for(
        fake=fake,
        runpod_status_method="POST",
        reconcile_after_s=0,
        reconcile_every_s=60,
        runpod_status_timeout_s=60,
    )
    user, http = _user(stack)
    body = _job_body(http)
    ids = [http.post("/api/jobs", json=body).json()["id"] for _ in range(3)]
    for job_id in ids:
        job = _finish(http, job_id)
        assert job["status"] == "SUCCEEDED", job
        assert len(job["outputs"]) == 1
    assert fake.status_calls == 3  # one /status per job: a second would re-run it
    assert [c.http_status for c in fake.callbacks] == [200, 200, 200]
    cancelled = http.post(f"/api/jobs/{ids[0]}/cancel")
    assert cancelled.status_code == 409
    report = audit(stack.services.db)
    assert report.ok, report.problems
    assert balance(stack.services.db, user.user.id) == (17, 0)
