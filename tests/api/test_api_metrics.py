"""/metrics: per-job metrics observed at the terminal transition, queue gauges from the DB."""

from __future__ import annotations

import httpx
from api_helpers import JOB, auth, result_body, signed
from prometheus_client.parser import text_string_to_metric_families

from api_stub.auth import NewUser


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_follow_jobs(client: httpx.AsyncClient, alice: NewUser) -> None:
    ids = [
        (await client.post("/api/jobs", json=JOB, headers=auth(alice))).json()["id"]
        for _ in range(3)
    ]
    before = _samples((await client.get("/metrics")).text)
    assert before[("simplypng_jobs_queued", ())] == 3
    assert before[("simplypng_jobs_inflight", ())] == 0
    assert ("simplypng_job_success_ratio", ()) not in before  # nothing finished yet

    ok, failed = result_body(ids[0]), result_body(ids[1], "FAILED")
    await client.post("/api/webhooks/runpod", content=ok, headers=signed(ids[0], ok))
    await client.post("/api/webhooks/runpod", content=failed, headers=signed(ids[1], failed))
    await client.post("/api/webhooks/runpod", content=ok, headers=signed(ids[0], ok))
    unsigned = {"webhook-id": "x", "content-type": "application/json"}
    await client.post("/api/webhooks/runpod", content=ok, headers=unsigned)
    await client.post("/api/webhooks/runpod", content=ok, headers={"content-type": "text/plain"})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    assert after[("simplypng_jobs_queued", ())] == 1
    assert after[("simplypng_job_success_ratio", ())] == 0.5
    finished = "simplypng_jobs_finished_total"
    assert after[(finished, (("status", "SUCCEEDED"), ("type", "bg_remove")))] == 1
    assert after[(finished, (("status", "FAILED"), ("type", "bg_remove")))] == 1
    assert after[("simplypng_job_failures_total", (("error_code", "NODE_ERROR"),))] == 1
    assert after[("simplypng_job_gpu_seconds_sum", ())] == 3.0
    assert after[("simplypng_job_credits_sum", ())] == 1
    assert after[("simplypng_job_e2e_latency_seconds_count", (("status", "SUCCEEDED"),))] == 1
    assert after[("simplypng_callbacks_total", (("outcome", "applied"),))] == 2
    assert after[("simplypng_callbacks_total", (("outcome", "ignored"),))] == 1
    assert after[("simplypng_callbacks_total", (("outcome", "rejected_401"),))] == 1
    assert after[("simplypng_callbacks_total", (("outcome", "rejected_415"),))] == 1
    assert after[("simplypng_jobs_created_total", (("type", "bg_remove"),))] == 3
