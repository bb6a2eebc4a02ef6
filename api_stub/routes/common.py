"""Helpers shared by the routes: services, authentication, JSON bodies."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api_stub import auth
from api_stub.auth import User
from api_stub.errors import ApiError
from api_stub.services import Services

M = TypeVar("M", bound=BaseModel)


def services(request: Request) -> Services:
    return request.app.state.services


async def current_user(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    user = await run_in_threadpool(auth.authenticate, services(request).db, key) if key else None
    if user is None:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "a valid API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


async def parse_body(request: Request, model: type[M]) -> M:
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "MALFORMED_JSON", "the body is not valid JSON") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(
            422, "INVALID_PAYLOAD", f"{field}: {first['msg']}", {"field": field}
        ) from None
