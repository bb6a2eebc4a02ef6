"""POST /api/webhooks/runpod: signatures, dedup, monotonic transitions, exactly-once credits."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from api_helpers import JOB, MASTER, auth, balance, job_row, ledger, result_body, row_counts, signed

from api_stub.auth import NewUser
from api_stub.db import Database

HOOK = "/api/webhooks/runpod"


async def _job(client: httpx.AsyncClient, user: NewUser) -> str:
    response = await client.post("/api/jobs", json=JOB, headers=auth(user))
    assert response.status_code == 201
    return str(response.json()["id"])


async def test_success_captures_once(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id)
    response = await client.post(HOOK, content=body, headers=signed(job_id, body))
    assert response.status_code == 200
    assert response.json() == {"status": "applied", "job_status": "SUCCEEDED"}
    row = job_row(db, job_id)
    assert row["status"] == "SUCCEEDED"
    assert row["gpu_seconds"] == 1.5 and row["worker_version"] == "test-1"
    assert row["finished_at"] is not None and row["result_source"] == "webhook"
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, alice.user.id) == (99, 0)


async def test_failure_releases_the_hold(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id, "FAILED")
    response = await client.post(HOOK, content=body, headers=signed(job_id, body))
    assert response.json()["job_status"] == "FAILED"
    view = (await client.get(f"/api/jobs/{job_id}", headers=auth(alice))).json()
    assert view["error"] == {
        "code": "NODE_ERROR",
        "message": "node 3 raised",
        "details": {"node_id": "3"},
    }
    assert ledger(db, job_id) == ["hold", "release"]
    assert balance(db, alice.user.id) == (100, 0)


async def test_duplicate_webhook_id_is_ignored(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id)
    headers = signed(job_id, body, webhook_id="msg_once")
    first = await client.post(HOOK, content=body, headers=headers)
    second = await client.post(HOOK, content=body, headers=headers)
    assert first.json()["status"] == "applied"
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert ledger(db, job_id) == ["hold", "capture"]


async def test_replay_with_new_id_and_late_failure_change_nothing(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id)
    await client.post(HOOK, content=body, headers=signed(job_id, body))
    replay = await client.post(HOOK, content=body, headers=signed(job_id, body))
    late = result_body(job_id, "FAILED")
    failed = await client.post(HOOK, content=late, headers=signed(job_id, late))
    assert replay.json() == {"status": "ignored", "job_status": "SUCCEEDED"}
    assert failed.json() == {"status": "ignored", "job_status": "SUCCEEDED"}
    assert job_row(db, job_id)["status"] == "SUCCEEDED"
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, alice.user.id) == (99, 0)


async def test_concurrent_duplicates_charge_once(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id)
    same = signed(job_id, body, webhook_id="msg_same")
    calls = [client.post(HOOK, content=body, headers=same) for _ in range(5)]
    calls += [client.post(HOOK, content=body, headers=signed(job_id, body)) for _ in range(5)]
    responses = await asyncio.gather(*calls)
    outcomes = sorted(r.json()["status"] for r in responses)
    assert outcomes.count("applied") == 1
    assert all(r.status_code == 200 for r in responses)
    assert ledger(db, job_id) == ["hold", "capture"]
    assert balance(db, alice.user.id) == (99, 0)


async def test_bad_signature_is_401_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    before = row_counts(db)
    body = result_body(job_id)
    cases = [
        signed(job_id, body, key=secrets.token_bytes(32)),  # wrong key
        signed(str(uuid.uuid4()), body),  # another job's key
        {**signed(job_id, body), "webhook-signature": "v1,AAAA"},
        {**signed(job_id, body), "webhook-signature": "garbage"},
        {k: v for k, v in signed(job_id, body).items() if k != "webhook-id"},
        signed(job_id, body, timestamp=time.time() - 360),  # outside +-5 minutes
        signed(job_id, body, timestamp=time.time() + 360),
    ]
    for headers in cases:
        response = await client.post(HOOK, content=body, headers=headers)
        assert response.status_code == 401, headers
    tampered = result_body(job_id, "FAILED")
    response = await client.post(HOOK, content=tampered, headers=signed(job_id, body))
    assert response.status_code == 401
    assert row_counts(db) == before
    assert job_row(db, job_id)["status"] == "QUEUED"


async def test_timestamp_inside_the_window_is_accepted(
    client: httpx.AsyncClient, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    body = result_body(job_id)
    response = await client.post(
        HOOK, content=body, headers=signed(job_id, body, timestamp=time.time() - 240)
    )
    assert response.status_code == 200


async def test_unknown_job_is_404_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    await _job(client, alice)
    before = row_counts(db)
    stranger = str(uuid.uuid4())
    body = result_body(stranger)
    response = await client.post(HOOK, content=body, headers=signed(stranger, body))
    assert response.status_code == 404
    assert row_counts(db) == before


async def test_malformed_body_is_400_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job_id = await _job(client, alice)
    before = row_counts(db)
    bodies = [
        result_body(job_id, status="DONE"),
        json.dumps({"job_id": job_id, "status": "SUCCEEDED"}).encode(),  # metrics missing
        result_body(job_id, outputs=[{"url": "x"}]),
    ]
    for body in bodies:
        response = await client.post(HOOK, content=body, headers=signed(job_id, body))
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "MALFORMED_CALLBACK"
    assert row_counts(db) == before


KEYS = [secrets.token_bytes(32), secrets.token_bytes(32)]
ROTATING = {
    "webhook_secrets": ",".join("whsec_" + base64.b64encode(k).decode() for k in KEYS),
    "x_signature_enabled": True,
}


async def test_any_configured_secret_verifies(
    client_for: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], alice: NewUser
) -> None:
    async with client_for(**ROTATING) as http:
        ids = [await _job(http, alice) for _ in range(3)]
        codes = []
        for job_id, key in zip(ids, [*KEYS, secrets.token_bytes(32)], strict=True):
            body = result_body(job_id)
            response = await http.post(HOOK, content=body, headers=signed(job_id, body, key=key))
            codes.append(response.status_code)
    assert codes == [200, 200, 401]


async def test_x_signature_is_required_when_enabled(
    client_for: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]],
    db: Database,
    alice: NewUser,
) -> None:
    async with client_for(**ROTATING) as http:
        job_id = await _job(http, alice)
        body = result_body(job_id)
        headers = signed(job_id, body)
        missing = {k: v for k, v in headers.items() if k != "X-Signature"}
        wrong = {**headers, "X-Signature": base64.b64encode(b"x" * 32).decode()}
        assert (await http.post(HOOK, content=body, headers=missing)).status_code == 401
        assert (await http.post(HOOK, content=body, headers=wrong)).status_code == 401
        assert job_row(db, job_id)["status"] == "QUEUED"
        assert (await http.post(HOOK, content=body, headers=headers)).status_code == 200


def test_the_per_job_key_is_what_the_dispatcher_hands_out() -> None:
    from api_stub import signing

    job_id = str(uuid.uuid4())
    key = signing.callback_key(MASTER, job_id)
    assert len(key) == 32
    assert key != signing.callback_key(MASTER, str(uuid.uuid4()))
    assert key != signing.callback_key("n" * 48, job_id)


async def test_callbacks_signed_by_the_real_worker_code_verify(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    """Interop with handler.callback: the key handed out in auth.callback_hmac, as the worker
    resolves it, signs callbacks this receiver accepts (with X-Signature too)."""
    from api_stub import signing
    from handler.callback import resolve_key, sign_headers
    from handler.settings import Settings as WorkerSettings

    job_id = await _job(client, alice)
    handed_out = signing.b64(signing.callback_key(MASTER, job_id))
    key = resolve_key(handed_out, WorkerSettings())
    body = result_body(job_id)
    headers = sign_headers(body, key, message_id="msg_worker", timestamp=int(time.time()))
    response = await client.post(HOOK, content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "applied"
    assert ledger(db, job_id) == ["hold", "capture"]
