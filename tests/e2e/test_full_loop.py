"""The full loop with the REAL worker: api_stub (API, dispatcher, reconciler) on Postgres with
STORAGE=s3 on moto's S3 server, `python -m handler --rp_serve_api` as a process attached to the
ComfyUI double (a process running our node pack with tiny models).

Between the parts sit two loopback proxies (tests/fakes/full_stack.py): RunpodProxy (control
plane -> worker: scripted 429s, held /run calls, a gate on /status) and CallbackTap (worker ->
webhook receiver: records the signed callbacks verbatim, can lose them).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from standardwebhooks import Webhook

from api_stub import signing
from api_stub.audit import audit
from api_stub.db import Database
from api_stub.testing.fake_runpod import sign_callback
from api_stub.testing.server import LoopbackServer
from tests.api.api_helpers import balance, job_row, ledger
from tests.fakes.full_stack import FullLoop, RunpodProxy, settings_env, spawn

pytestmark = [pytest.mark.postgres, pytest.mark.torch]

CREDITS = 10


def product_photo(size: int = 72) -> Image.Image:
    """A red disc on light grey."""
    yy, xx = np.mgrid[:size, :size]
    pixels = np.full((size, size, 3), 230, np.uint8)
    pixels[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = (200, 30, 30)
    return Image.fromarray(pixels)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def webhook_ids(db: Database, job_id: str) -> list[str]:
    with db.transaction(write=False) as tx:
        rows = tx.all("SELECT webhook_id FROM webhook_events WHERE job_id = ?", (job_id,))
    return sorted(row["webhook_id"] for row in rows)


def assert_books_balance(loop: FullLoop) -> None:
    report = audit(loop.stack.services.db)
    assert report.ok, report.problems


def download(output: dict[str, Any], loop: FullLoop) -> Image.Image:
    """GET the signed URL the API gave the user; checks it against the reported file."""
    url = output["url"]
    if loop.stack.settings.storage == "s3":
        assert url.startswith(f"{loop.worker.s3.endpoint_url}/{loop.bucket}/outputs/")
        assert "X-Amz-Signature=" in url
    else:
        assert url.startswith(f"{loop.url}/storage/files/outputs/") and "sig=" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) == output["bytes"]
    assert hashlib.sha256(response.content).hexdigest() == output["sha256"]
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def verify_worker_signature(callback_body: bytes, headers: dict[str, str], key: bytes) -> None:
    """Both signatures the real worker sends hold under the job's derived key."""
    Webhook(key).verify(callback_body, headers)  # raises if wrong or outside the time window
    assert signing.equal(signing.hmac_b64(key, callback_body), headers["x-signature"])


# --- the happy path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "job_type", "params", "fmt", "models"),
    [
        ("s3", "jpeg_to_png", {}, "JPEG", []),  # core ComfyUI nodes only
        ("s3", "bg_remove", {"halo": 2}, "PNG", ["birefnet-general"]),  # node pack + a model
        # The embedded storage: the worker PUTs to the API's HMAC-signed URLs over loopback.
        ("local", "jpeg_to_png", {}, "PNG", []),
    ],
)
def test_job_runs_queued_running_succeeded_and_is_charged_once(
    full_loop: Callable[..., FullLoop],
    storage: str,
    job_type: str,
    params: dict[str, Any],
    fmt: str,
    models: list[str],
) -> None:
    loop = full_loop(paused=True, storage=storage)
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    source = product_photo()
    item = loop.upload(http, encoded(source, fmt), f"image/{fmt.lower()}")
    created = http.post("/api/jobs", json={"type": job_type, "params": params, "inputs": [item]})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert http.get(f"/api/jobs/{job_id}").json()["status"] == "QUEUED"
    assert balance(db, user.user.id) == (CREDITS - 1, 1)  # held, not charged

    loop.proxy.status_gate.clear()  # the job runs inside /status: hold it there
    loop.stack.resume()
    loop.wait(http, job_id, until={"RUNNING"})
    [run] = loop.proxy.runs_of(job_id)
    assert run.status_code == 200 and job_row(db, job_id)["runpod_job_id"] == run.runpod_id
    assert loop.tap.of(job_id) == []  # nothing ran yet
    loop.proxy.status_gate.set()
    job = loop.wait(http, job_id)
    assert job["status"] == "SUCCEEDED", (job, loop.worker.logs())

    # The callback: one, signed by the worker with the job's key, applied by the receiver.
    [callback] = loop.tap.of(job_id)
    assert callback.forwarded and callback.status_code == 200
    assert callback.answer == {"status": "applied", "job_status": "SUCCEEDED"}
    verify_worker_signature(
        callback.body, callback.headers, signing.callback_key(loop.master_key, job_id)
    )
    # ... and its body is what the handler returned to Runpod (whose SDK pops `error`).
    [status_call] = loop.proxy.statuses
    assert status_call.answer["status"] == "COMPLETED"
    assert json.loads(callback.body) == {**status_call.answer["output"], "error": None}
    row = job_row(db, job_id)
    assert row["result_source"] == "webhook"
    assert webhook_ids(db, job_id) == [callback.headers["webhook-id"]]

    # The output, downloaded through the presigned URL the API hands its owner.
    [output] = job["outputs"]
    image = download(output, loop)
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == source.size == (output["width"], output["height"])
    assert not image.info.get("exif")
    assert [m["name"] for m in job["models"]] == models
    assert all(m["sha256"] for m in job["models"])
    assert job["comfyui_version"] == "0.3.64-double"
    assert job["timings"]["queue_s"] is not None and job["timings"]["worker"]

    # Credits: captured once.
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, user.user.id) == (CREDITS - 1, 0)
    assert_books_balance(loop)
    _, stranger = loop.user()
    assert stranger.get(f"/api/jobs/{job_id}").status_code == 404  # not another user's
    # The worker logged neither the job's callback key nor any signed URL.
    logs = loop.worker.worker.log_text()
    assert job_id in logs
    assert signing.b64(signing.callback_key(loop.master_key, job_id)) not in logs
    assert "Signature=" not in logs and "sig=" not in logs


# --- failure paths -------------------------------------------------------------------------


def test_node_failure_fails_the_job_releases_the_hold_and_charges_nothing(
    full_loop: Callable[..., FullLoop],
) -> None:
    loop = full_loop()
    loop.worker.double.set_faults(fail={"SimplyPNGColourKey": "kaboom in node"})
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "PNG"), "image/png")
    body = {"type": "jpeg_to_png", "params": {"transparent": "color"}, "inputs": [item]}
    job_id = http.post("/api/jobs", json=body).json()["id"]
    job = loop.wait(http, job_id)

    assert job["status"] == "FAILED" and job["outputs"] == []
    assert job["error"]["code"] == "NODE_ERROR"
    assert job["error"]["details"]["node_type"] == "SimplyPNGColourKey"
    assert "kaboom in node" in job["error"]["message"] + json.dumps(job["error"]["details"])
    assert "Traceback" not in json.dumps(job)
    [callback] = loop.tap.of(job_id)
    assert callback.answer == {"status": "applied", "job_status": "FAILED"}
    assert job_row(db, job_id)["result_source"] == "webhook"
    # runpod's local API reports a result carrying `error` as FAILED; the callback came first.
    [status_call] = loop.proxy.statuses
    assert status_call.answer["status"] == "FAILED"
    assert ledger(db, job_id) == ["hold", "release"]
    assert balance(db, user.user.id) == (CREDITS, 0)
    assert_books_balance(loop)


def test_lost_callback_is_recovered_from_runpod_status(
    full_loop: Callable[..., FullLoop],
) -> None:
    loop = full_loop(paused=True)
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "JPEG"), "image/jpeg")
    job_id = http.post("/api/jobs", json={"type": "jpeg_to_png", "inputs": [item]}).json()["id"]
    loop.tap.lose.add(job_id)  # every delivery of this job's callback fails with 503
    loop.stack.resume()
    job = loop.wait(http, job_id)

    assert job["status"] == "SUCCEEDED", (job, loop.worker.logs())
    attempts = loop.tap.of(job_id)
    assert len(attempts) == 2 and not any(a.forwarded for a in attempts)  # the worker retried
    assert webhook_ids(db, job_id) == []  # the receiver never heard of it
    row = job_row(db, job_id)
    assert row["result_source"] == "reconciler"
    [status_call] = loop.proxy.statuses
    assert {**status_call.answer["output"], "error": None} == json.loads(attempts[0].body)
    download(job["outputs"][0], loop)
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, user.user.id) == (CREDITS - 1, 0)
    assert_books_balance(loop)


def test_lost_callback_of_a_failed_job_still_charges_nothing(
    full_loop: Callable[..., FullLoop],
) -> None:
    loop = full_loop(paused=True)
    loop.worker.double.set_faults(fail={"SimplyPNGColourKey": "kaboom in node"})
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "PNG"), "image/png")
    body = {"type": "jpeg_to_png", "params": {"transparent": "color"}, "inputs": [item]}
    job_id = http.post("/api/jobs", json=body).json()["id"]
    loop.tap.lose.add(job_id)
    loop.stack.resume()
    job = loop.wait(http, job_id)

    [*_, last] = loop.tap.of(job_id)
    assert json.loads(last.body)["error_code"] == "NODE_ERROR"  # what the worker said
    # runpod's SDK turns a result carrying `error` into a FAILED job whose /status holds only
    # that string; the worker puts its code in front ("NODE_ERROR: ..."), so the reconciler
    # keeps the worker's code.
    [status_call] = loop.proxy.statuses
    assert status_call.answer["status"] == "FAILED"
    assert status_call.answer["error"].startswith("NODE_ERROR: ")
    assert job["status"] == "FAILED" and job["error"]["code"] == "NODE_ERROR"
    assert job_row(db, job_id)["result_source"] == "reconciler"
    assert ledger(db, job_id) == ["hold", "release"]
    assert balance(db, user.user.id) == (CREDITS, 0)
    assert_books_balance(loop)


def test_duplicate_and_replayed_callbacks_are_not_charged_twice(
    full_loop: Callable[..., FullLoop],
) -> None:
    loop = full_loop()
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "PNG"), "image/png")
    job_id = http.post("/api/jobs", json={"type": "jpeg_to_png", "inputs": [item]}).json()["id"]
    assert loop.wait(http, job_id)["status"] == "SUCCEEDED"
    [original] = loop.tap.of(job_id)
    receiver = f"{loop.url}/api/webhooks/runpod"
    key = signing.callback_key(loop.master_key, job_id)

    # The worker's own delivery, re-POSTed byte for byte: recognised by its webhook-id.
    again = httpx.post(receiver, content=original.body, headers=original.headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    # The same result under a new webhook-id, freshly signed: the job is terminal, so ignored.
    fresh = sign_callback(original.body, key, f"msg_{uuid.uuid4().hex}")
    ignored = httpx.post(receiver, content=original.body, headers=fresh)
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    # A late FAILED for the same job cannot undo SUCCEEDED or release what was captured.
    failed = dict(json.loads(original.body), status="FAILED", outputs=[], error="late")
    failed_body = json.dumps({**failed, "error_code": "TIMEOUT"}).encode()
    late = httpx.post(
        receiver,
        content=failed_body,
        headers=sign_callback(failed_body, key, f"msg_{uuid.uuid4().hex}"),
    )
    assert late.status_code == 200 and late.json()["job_status"] == "SUCCEEDED"
    # A replay signed more than 5 minutes ago is refused, even with a valid signature.
    stale = sign_callback(
        original.body, key, f"msg_{uuid.uuid4().hex}", timestamp=time.time() - 360
    )
    refused = httpx.post(receiver, content=original.body, headers=stale)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "BAD_SIGNATURE"
    # A tampered body under the worker's headers is refused too.
    tampered = original.body.replace(b'"SUCCEEDED"', b'"FAILED"')
    forged = httpx.post(receiver, content=tampered, headers=original.headers)
    assert forged.status_code == 401

    assert http.get(f"/api/jobs/{job_id}").json()["status"] == "SUCCEEDED"
    assert len(webhook_ids(db, job_id)) == 3  # original, fresh id, late FAILED; not the refused
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, user.user.id) == (CREDITS - 1, 0)
    assert_books_balance(loop)


def test_dispatcher_killed_after_claim_is_requeued_and_the_job_runs_once(
    full_loop: Callable[..., FullLoop], tmp_path
) -> None:
    loop = full_loop(paused=True)  # its own dispatcher and reconciler wait
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "PNG"), "image/png")
    job_id = http.post("/api/jobs", json={"type": "jpeg_to_png", "inputs": [item]}).json()["id"]

    # A separate dispatcher process whose /run never gets an answer: it claims the job, calls
    # /run, and is SIGKILLed while waiting (before it could mark the job RUNNING).
    stuck = RunpodProxy(loop.worker.runpod_url)
    stuck.hold_runs()
    with LoopbackServer(stuck.app) as stuck_server:
        env = settings_env(
            loop.stack.settings,
            runpod_endpoint_url=stuck_server.url,
            lease_s=3,
            runpod_timeout_s=2,
            poll_s=0.1,
        )
        process = spawn(
            "dispatcher", ["-m", "api_stub", "dispatcher"], env=env, log_path=tmp_path / "d.log"
        )
        try:
            deadline = time.monotonic() + 600  # catches a hang only
            while stuck.held_runs == 0:
                assert process.alive(), process.log_tail()
                assert time.monotonic() < deadline, process.log_tail()
                time.sleep(0.02)
            process.kill()
        finally:
            process.stop()
            stuck.close()
    claimed = job_row(db, job_id)
    assert claimed["status"] == "DISPATCHING" and claimed["attempts"] == 1
    assert claimed["lease_owner"] not in {d.owner for d in loop.stack.dispatchers}

    loop.stack.resume()  # the lease expires; the job is re-queued and dispatched again
    job = loop.wait(http, job_id)
    assert job["status"] == "SUCCEEDED", (job, loop.worker.logs())
    assert job["attempts"] == 2
    assert len(loop.proxy.runs_of(job_id)) == 1  # the worker saw the job once
    assert len(loop.tap.of(job_id)) == 1
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, user.user.id) == (CREDITS - 1, 0)
    assert_books_balance(loop)


def test_runpod_429_is_retried_and_the_job_runs_once(
    full_loop: Callable[..., FullLoop],
) -> None:
    loop = full_loop()
    loop.proxy.refuse_next_runs(429, 429, retry_after=0)
    loop.proxy.refuse_next_statuses(429)
    db = loop.stack.services.db
    user, http = loop.user(CREDITS)
    item = loop.upload(http, encoded(product_photo(), "PNG"), "image/png")
    job_id = http.post("/api/jobs", json={"type": "jpeg_to_png", "inputs": [item]}).json()["id"]
    job = loop.wait(http, job_id)

    assert job["status"] == "SUCCEEDED", (job, loop.worker.logs())
    assert [run.status_code for run in loop.proxy.runs_of(job_id)] == [429, 429, 200]
    assert [call.status_code for call in loop.proxy.statuses] == [429, 200]
    assert len(loop.tap.of(job_id)) == 1
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, user.user.id) == (CREDITS - 1, 0)
    assert_books_balance(loop)
