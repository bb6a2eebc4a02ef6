"""POST /api/jobs, /api/jobs/batch, GET /api/jobs/{id}, cancel: on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from api_helpers import JOB, auth, balance, ledger, row_counts

from api_stub.auth import NewUser
from api_stub.db import Database

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


async def test_create_job_queues_it_and_holds_credits(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    response = await client.post("/api/jobs", json=JOB, headers=auth(alice))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "QUEUED"
    assert uuid.UUID(job["id"]).version == 4
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    # Params come back normalised by the worker's own spec: defaults filled in, v recorded.
    assert (
        job["params"]["halo"] == 3 and job["params"]["v"] == 1 and job["params"]["shadow"] == "none"
    )
    assert job["cost"] == 1
    assert balance(db, alice.user.id) == (99, 1)
    assert ledger(db, job["id"]) == ["hold"]


async def test_cost_is_per_input_and_per_type(
    client_for: ClientFor, db: Database, new_user: Callable[..., NewUser]
) -> None:
    user = new_user(100)
    async with client_for(job_costs="upscale_2k=3") as http:
        body = {
            "type": "upscale_2k",
            "inputs": [{"url": "https://x/a.png"}, {"url": "https://x/b.png"}],
        }
        response = await http.post("/api/jobs", json=body, headers=auth(user))
    assert response.status_code == 201
    assert response.json()["cost"] == 6
    assert balance(db, user.user.id) == (94, 6)


async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, db: Database) -> None:
    assert (await client.post("/api/jobs", json=JOB)).status_code == 401
    bad = {"Authorization": "Bearer sp_not-a-real-key"}
    response = await client.post("/api/jobs", json=JOB, headers=bad)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert row_counts(db)["jobs"] == 0


async def test_x_api_key_header_is_accepted(client: httpx.AsyncClient, alice: NewUser) -> None:
    response = await client.post("/api/jobs", json=JOB, headers={"X-API-Key": alice.api_key})
    assert response.status_code == 201


async def test_api_keys_are_stored_hashed(db: Database, alice: NewUser) -> None:
    with db.transaction(write=False) as tx:
        rows = tx.all("SELECT * FROM api_keys")
    assert len(rows) == 1
    assert alice.api_key not in str(rows[0].values())
    assert rows[0]["key_hash"] != alice.api_key


async def test_invalid_params_name_the_field(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    body = {**JOB, "params": {"halo": 99}}
    response = await client.post("/api/jobs", json=body, headers=auth(alice))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMS"
    assert error["details"]["field"] == "params.halo"
    assert row_counts(db)["jobs"] == 0
    assert balance(db, alice.user.id) == (100, 0)


async def test_unknown_type_and_param_version_are_rejected(
    client: httpx.AsyncClient, alice: NewUser
) -> None:
    response = await client.post("/api/jobs", json={**JOB, "type": "paint"}, headers=auth(alice))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "type"
    response = await client.post("/api/jobs", json={**JOB, "params": {"v": 7}}, headers=auth(alice))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "params.v"


async def test_malformed_json_is_400(client: httpx.AsyncClient, alice: NewUser) -> None:
    response = await client.post(
        "/api/jobs",
        content=b"{not json",
        headers={**auth(alice), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED_JSON"


async def test_inputs_must_be_https_or_own_uploads(
    client: httpx.AsyncClient, alice: NewUser, new_user: Callable[..., NewUser]
) -> None:
    bob = new_user(10, "bob")
    cases = [
        ({"url": "http://img.example/a.png"}, "inputs.0.url"),
        ({"url": "file:///etc/passwd"}, "inputs.0.url"),
        ({"key": f"uploads/{bob.user.id}/x.png"}, "inputs.0.key"),  # someone else's upload
        ({"key": f"uploads/{alice.user.id}/../x.png"}, "inputs.0.key"),
    ]
    for item, field in cases:
        response = await client.post(
            "/api/jobs", json={**JOB, "inputs": [item]}, headers=auth(alice)
        )
        assert response.status_code == 422, item
        assert response.json()["error"]["details"]["field"] == field
    own = {"key": f"uploads/{alice.user.id}/0b0e.png"}
    response = await client.post("/api/jobs", json={**JOB, "inputs": [own]}, headers=auth(alice))
    assert response.status_code == 201


async def test_short_of_credits_is_402_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, new_user: Callable[..., NewUser]
) -> None:
    poor = new_user(1, "poor")
    assert (await client.post("/api/jobs", json=JOB, headers=auth(poor))).status_code == 201
    before = row_counts(db)
    response = await client.post("/api/jobs", json=JOB, headers=auth(poor))
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert row_counts(db) == before
    assert balance(db, poor.user.id) == (0, 1)


async def test_concurrent_requests_never_overdraw(
    client: httpx.AsyncClient, db: Database, new_user: Callable[..., NewUser]
) -> None:
    user = new_user(10, "racer")
    responses = await asyncio.gather(
        *(client.post("/api/jobs", json=JOB, headers=auth(user)) for _ in range(30))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 10
    assert codes.count(402) == 20
    assert balance(db, user.user.id) == (0, 10)


async def test_idempotency_key_replays_the_first_job(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    headers = {**auth(alice), "Idempotency-Key": "order-42"}
    first = await client.post("/api/jobs", json=JOB, headers=headers)
    again = await client.post("/api/jobs", json=JOB, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert row_counts(db)["jobs"] == 1
    assert balance(db, alice.user.id) == (99, 1)
    other = await client.post("/api/jobs", json={**JOB, "params": {"halo": 4}}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_idempotency_keys_are_per_user(
    client: httpx.AsyncClient, alice: NewUser, new_user: Callable[..., NewUser]
) -> None:
    bob = new_user(10, "bob")
    a = await client.post("/api/jobs", json=JOB, headers={**auth(alice), "Idempotency-Key": "k"})
    b = await client.post("/api/jobs", json=JOB, headers={**auth(bob), "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_concurrent_same_idempotency_key_creates_one_job(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    headers = {**auth(alice), "Idempotency-Key": "same"}
    responses = await asyncio.gather(
        *(client.post("/api/jobs", json=JOB, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert row_counts(db)["jobs"] == 1
    assert balance(db, alice.user.id) == (99, 1)


async def test_rate_limit_answers_429_with_retry_after(
    client_for: ClientFor, db: Database, alice: NewUser
) -> None:
    frozen = time.time()  # no refill between the requests, however slow the machine
    async with client_for(clock=lambda: frozen, rate_limit_burst=3, rate_limit_per_s=0.5) as http:
        codes = [
            (await http.post("/api/jobs", json=JOB, headers=auth(alice))).status_code
            for _ in range(3)
        ]
        limited = await http.post("/api/jobs", json=JOB, headers=auth(alice))
    assert codes == [201, 201, 201]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert limited.headers["retry-after"] == "2"  # one token at 0.5 tokens/s
    assert row_counts(db)["jobs"] == 3


async def test_users_read_only_their_own_jobs(
    client: httpx.AsyncClient, alice: NewUser, new_user: Callable[..., NewUser]
) -> None:
    bob = new_user(10, "bob")
    job = (await client.post("/api/jobs", json=JOB, headers=auth(alice))).json()
    mine = await client.get(f"/api/jobs/{job['id']}", headers=auth(alice))
    assert mine.status_code == 200 and mine.json()["id"] == job["id"]
    theirs = await client.get(f"/api/jobs/{job['id']}", headers=auth(bob))
    missing = await client.get(f"/api/jobs/{uuid.uuid4()}", headers=auth(bob))
    garbage = await client.get("/api/jobs/not-a-uuid", headers=auth(bob))
    assert theirs.status_code == missing.status_code == garbage.status_code == 404
    assert theirs.json() == missing.json()  # indistinguishable from a missing job
    cancel = await client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(bob))
    assert cancel.status_code == 404


async def test_batch_is_created_atomically(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    body = {"jobs": [JOB, {**JOB, "type": "upscale_2k", "params": {"target": 1024}}]}
    response = await client.post("/api/jobs/batch", json=body, headers=auth(alice))
    assert response.status_code == 201, response.text
    batch = response.json()
    assert [j["type"] for j in batch["jobs"]] == ["bg_remove", "upscale_2k"]
    assert {j["batch_id"] for j in batch["jobs"]} == {batch["batch_id"]}
    assert balance(db, alice.user.id) == (98, 2)

    before = row_counts(db)
    bad = {"jobs": [JOB, {**JOB, "params": {"halo": -1}}]}
    response = await client.post("/api/jobs/batch", json=bad, headers=auth(alice))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "jobs.1.params.halo"
    assert row_counts(db) == before


async def test_batch_short_of_credits_creates_nothing(
    client: httpx.AsyncClient, db: Database, new_user: Callable[..., NewUser]
) -> None:
    user = new_user(2, "two")
    response = await client.post("/api/jobs/batch", json={"jobs": [JOB] * 3}, headers=auth(user))
    assert response.status_code == 402
    assert row_counts(db)["jobs"] == 0
    assert balance(db, user.user.id) == (2, 0)


async def test_batch_size_is_limited(client: httpx.AsyncClient, alice: NewUser) -> None:
    response = await client.post("/api/jobs/batch", json={"jobs": [JOB] * 51}, headers=auth(alice))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "jobs"


async def test_batch_idempotency(client: httpx.AsyncClient, db: Database, alice: NewUser) -> None:
    headers = {**auth(alice), "Idempotency-Key": "batch-1"}
    body = {"jobs": [JOB, JOB]}
    first = await client.post("/api/jobs/batch", json=body, headers=headers)
    again = await client.post("/api/jobs/batch", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "jobs": again.json()["jobs"]}
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert row_counts(db)["jobs"] == 2


async def test_cancel_a_queued_job_releases_its_hold(
    client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    job = (await client.post("/api/jobs", json=JOB, headers=auth(alice))).json()
    response = await client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(alice))
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["error"]["code"] == "CANCELLED"
    assert balance(db, alice.user.id) == (100, 0)
    assert ledger(db, job["id"]) == ["hold", "release"]
    again = await client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(alice))
    assert again.status_code == 409
    assert ledger(db, job["id"]) == ["hold", "release"]


async def test_me_reports_the_balance(client: httpx.AsyncClient, alice: NewUser) -> None:
    await client.post("/api/jobs", json=JOB, headers=auth(alice))
    me = (await client.get("/api/me", headers=auth(alice))).json()
    assert me == {"user_id": alice.user.id, "available": 99, "held": 1}
