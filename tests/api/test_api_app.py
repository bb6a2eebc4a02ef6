"""Errors Starlette raises itself (unknown route, wrong method, body over a route's limit, an
unhandled exception) come back in the API's JSON error shape, like every error the routes
raise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from api_helpers import JOB, auth, balance, make_jobs, row_counts, signed

from api_stub.app import API_BODY_LIMIT, create_app
from api_stub.auth import NewUser
from api_stub.db import Database
from api_stub.services import Services
from api_stub.settings import ApiSettings

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def _error(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    for path in ("/nope", "/api/jobs/x/y/z", "/api/"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert _error(response) == {"code": "NOT_FOUND", "message": "Not Found"}


async def test_wrong_method_is_a_json_405_that_names_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/api/me")
    assert response.status_code == 405
    assert _error(response)["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}  # HEAD comes with GET
    for path in ("/api/jobs", "/api/uploads", "/api/webhooks/runpod"):
        response = await client.get(path)
        assert response.status_code == 405 and response.headers["allow"] == "POST", path
        assert _error(response)["code"] == "METHOD_NOT_ALLOWED"


async def test_streamed_body_over_the_route_limit_is_a_json_413(
    client: httpx.AsyncClient, alice: NewUser
) -> None:
    # Without a Content-Length the limit trips while the route reads the body.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (API_BODY_LIMIT // 4)

    response = await client.post(
        "/api/jobs",
        content=chunks(),
        headers={**auth(alice), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert _error(response)["code"] == "BODY_TOO_LARGE"


def _too_big(limit: int) -> bytes:
    return b'{"pad": "' + b"x" * limit + b'"}'


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs",
        "/api/jobs/batch",
        "/api/uploads",
        "/api/jobs/{job_id}/cancel",
        "/api/webhooks/runpod",
    ],
)
async def test_declared_length_over_the_limit_is_a_json_413_and_writes_nothing(
    path: str, client: httpx.AsyncClient, db: Database, alice: NewUser
) -> None:
    [job_id] = make_jobs(db, alice, 1)
    body = _too_big(API_BODY_LIMIT)
    headers = {**auth(alice), **signed(job_id, body), "content-type": "application/json"}
    before = row_counts(db)
    response = await client.post(path.format(job_id=job_id), content=body, headers=headers)
    assert response.status_code == 413, response.text
    error = _error(response)
    assert error["code"] == "BODY_TOO_LARGE"
    assert str(API_BODY_LIMIT) in error["message"]
    assert row_counts(db) == before
    assert balance(db, alice.user.id) == (99, 1)  # the one job's hold, nothing more


async def test_storage_routes_answer_413_in_the_same_shape(client_for: ClientFor) -> None:
    async with client_for(upload_max_bytes=100, output_max_bytes=100) as http:
        upload = await http.post("/storage/upload", content=b"x" * 70_000)
        put = await http.put("/storage/files/outputs/a.png", content=b"x" * 101)
    for response in (upload, put):
        assert response.status_code == 413
        assert _error(response)["code"] == "BODY_TOO_LARGE"


async def test_a_body_within_the_limit_is_served(client: httpx.AsyncClient, alice: NewUser) -> None:
    response = await client.post("/api/jobs", json=JOB, headers=auth(alice))
    assert response.status_code == 201


async def test_an_unhandled_exception_is_a_json_500_without_its_details(
    settings: ApiSettings, services: Services
) -> None:
    def broken() -> bytes:
        raise RuntimeError("secret internals")

    services.metrics.render = broken  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=create_app(settings, services=services))
    transport.raise_app_exceptions = False  # as a server would: answer, then log
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/metrics")
    assert response.status_code == 500
    assert _error(response) == {"code": "INTERNAL_ERROR", "message": "internal server error"}
    assert "secret internals" not in response.text


async def test_the_routes_own_errors_keep_their_codes(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHENTICATED"
    response = await client.get(f"/api/jobs/{uuid.uuid4()}")
    assert _error(response)["code"] == "UNAUTHENTICATED"
