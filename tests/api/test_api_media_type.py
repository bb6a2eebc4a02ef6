"""Every JSON-body route refuses a body that is not declared application/json (415), before
anything is created, charged or rate-limited: a form or text/plain POST (what a cross-site form
can send) never reaches the handler's work."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_helpers import JOB, auth, balance, job_row, make_jobs, result_body, row_counts, signed

from api_stub.auth import NewUser
from api_stub.db import Database

REFUSED = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",  # JSON is UTF-8 (RFC 8259)
    "application/jsonx",
    None,  # no Content-Type at all
]
ACCEPTED = ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]


def _headers(user: NewUser, content_type: str | None) -> dict[str, str]:
    return {**auth(user), **({"content-type": content_type} if content_type else {})}


def _rate_buckets(db: Database) -> int:
    with db.transaction(write=False) as tx:
        row = tx.one("SELECT COUNT(*) AS n FROM rate_buckets")
    assert row is not None
    return int(row["n"])


def _assert_415(response: httpx.Response) -> None:
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert error["details"] == {"header": "Content-Type", "expected": "application/json"}


@pytest.mark.parametrize("content_type", REFUSED)
@pytest.mark.parametrize(
    ("path", "body"), [("/api/jobs", JOB), ("/api/jobs/batch", {"jobs": [JOB, JOB]})]
)
async def test_job_routes_refuse_other_media_types_and_charge_nothing(
    path: str,
    body: dict[str, Any],
    content_type: str | None,
    client: httpx.AsyncClient,
    db: Database,
    alice: NewUser,
) -> None:
    response = await client.post(
        path, content=json.dumps(body).encode(), headers=_headers(alice, content_type)
    )
    _assert_415(response)
    assert row_counts(db)["jobs"] == 0
    assert balance(db, alice.user.id) == (100, 0)
    assert _rate_buckets(db) == 0  # no token taken either


@pytest.mark.parametrize("content_type", ACCEPTED)
async def test_json_with_or_without_a_utf8_charset_is_accepted(
    content_type: str, client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    response = await client.post(
        "/api/jobs", content=json.dumps(JOB).encode(), headers=_headers(alice, content_type)
    )
    assert response.status_code == 201, response.text
    assert balance(db, alice.user.id) == (99, 1)


@pytest.mark.parametrize("content_type", REFUSED)
async def test_uploads_refuse_other_media_types(
    content_type: str | None, client: httpx.AsyncClient, alice: NewUser
) -> None:
    body = json.dumps({"content_type": "image/png"}).encode()
    response = await client.post(
        "/api/uploads", content=body, headers=_headers(alice, content_type)
    )
    _assert_415(response)


@pytest.mark.parametrize("content_type", REFUSED)
async def test_the_webhook_refuses_other_media_types_and_applies_nothing(
    content_type: str | None, client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    body = result_body(job_id)
    headers = {k: v for k, v in signed(job_id, body).items() if k.lower() != "content-type"}
    if content_type:
        headers["content-type"] = content_type
    response = await client.post("/api/webhooks/runpod", content=body, headers=headers)
    _assert_415(response)
    assert job_row(db, job_id)["status"] == "QUEUED"
    assert row_counts(db)["webhook_events"] == 0
    assert balance(db, alice.user.id) == (99, 1)


@pytest.mark.parametrize("content_type", [c for c in REFUSED if c])
async def test_cancel_refuses_a_body_that_is_not_json(
    content_type: str, client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    response = await client.post(
        f"/api/jobs/{job_id}/cancel", content=b"{}", headers=_headers(alice, content_type)
    )
    _assert_415(response)
    assert job_row(db, job_id)["status"] == "QUEUED"
    assert balance(db, alice.user.id) == (99, 1)


@pytest.mark.parametrize("content_type", [None, "application/json"])
async def test_cancel_without_a_body_or_with_json_still_cancels(
    content_type: str | None, client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    content = b"{}" if content_type else b""
    response = await client.post(
        f"/api/jobs/{job_id}/cancel", content=content, headers=_headers(alice, content_type)
    )
    assert response.status_code == 200, response.text
    assert job_row(db, job_id)["status"] == "CANCELLED"
    assert balance(db, alice.user.id) == (100, 0)


async def test_unauthenticated_callers_learn_nothing_more(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 401  # authentication is checked first
