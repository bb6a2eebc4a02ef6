"""Errors Starlette raises itself (unknown route, wrong method, body over a route's limit) come
back in the API's JSON error shape, like every error the routes raise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from api_stub.app import API_BODY_LIMIT
from api_stub.auth import NewUser


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
    response = await client.get("/api/jobs")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert _error(response)["code"] == "METHOD_NOT_ALLOWED"


async def test_streamed_body_over_the_route_limit_is_a_json_413(
    client: httpx.AsyncClient, alice: NewUser
) -> None:
    # Without a Content-Length the limit trips while the route reads the body, inside the
    # app's error handling. (With one, Starlette's body-limit middleware answers its own
    # text/plain 413 before any handler runs.)
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (API_BODY_LIMIT // 4)

    response = await client.post(
        "/api/jobs", content=chunks(), headers={"authorization": f"Bearer {alice.api_key}"}
    )
    assert response.status_code == 413
    assert _error(response) == {"code": "BODY_TOO_LARGE", "message": "Content Too Large"}


async def test_the_routes_own_errors_keep_their_codes(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHENTICATED"
