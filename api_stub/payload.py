"""The worker payload for one job (pure: no I/O beyond URL signing by the storage provider)."""

from __future__ import annotations

import json
from typing import Any

from api_stub import signing
from api_stub.db import Row
from api_stub.storage import Storage, output_prefix_key
from handler.contract import CallbackAuth, InputRef, JobPayload

# Input and output URLs must outlive the job's wait in Runpod's queue and its run.
URL_MARGIN_S = 900


def build_payload(
    job: Row, *, storage: Storage, master_key: str, webhook_url: str, now: float
) -> dict[str, Any]:
    """JobPayload for `job`, validated against the shared contract, as JSON-ready data."""
    ttl = int(job["timeout_s"]) + URL_MARGIN_S
    inputs = [
        InputRef(
            url=item["url"] if "url" in item else storage.input_url(item["key"], ttl_s=ttl, now=now)
        )
        for item in json.loads(job["input_urls"])
    ]
    payload = JobPayload(
        job_id=job["id"],
        type=job["type"],
        params=json.loads(job["params"]),
        inputs=inputs,
        output_prefix=storage.output_prefix(
            output_prefix_key(job["user_id"], job["id"]), ttl_s=ttl, now=now
        ),
        webhook_url=webhook_url,
        auth=CallbackAuth(callback_hmac=signing.b64(signing.callback_key(master_key, job["id"]))),
        timeout_s=int(job["timeout_s"]),
    )
    return payload.model_dump(mode="json", exclude_none=True)


def runpod_policy(job: Row, *, ttl_s: int) -> dict[str, int]:
    """Runpod's own execution timeout, a little past the worker's, as a backstop."""
    return {"executionTimeout": (int(job["timeout_s"]) + 60) * 1000, "ttl": ttl_s * 1000}
