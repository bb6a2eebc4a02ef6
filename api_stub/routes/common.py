"""Helpers shared by the routes: services, authentication, JSON bodies."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
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


JSON_MEDIA_TYPE = "application/json"
MEDIA_TYPE_DETAILS = {"header": "Content-Type", "expected": JSON_MEDIA_TYPE}


def json_media_type_refusal(headers: Headers, *, body_optional: bool = False) -> str | None:
    """Why a body must be refused as not application/json (None when it may be read).

    Checked before any work, so a text/plain or form POST (what a cross-site form can send)
    never creates or charges anything. A charset other than utf-8 is refused: JSON is UTF-8.
    With `body_optional`, a request without a body needs no Content-Type.
    """
    content_type = headers.get("content-type")
    if body_optional and content_type is None and not _has_body(headers):
        return None
    if content_type is not None and _is_json(content_type):
        return None
    given = content_type[:100] if content_type else "undeclared"
    return f"the body must be {JSON_MEDIA_TYPE} (UTF-8), not {given}"


def _is_json(content_type: str) -> bool:
    media_type, *params = content_type.split(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers


def require_json(request: Request, *, body_optional: bool = False) -> None:
    """Raise the API's 415 unless the body is declared application/json."""
    reason = json_media_type_refusal(request.headers, body_optional=body_optional)
    if reason is not None:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", reason, MEDIA_TYPE_DETAILS)


async def parse_body(request: Request, model: type[M]) -> M:
    require_json(request)
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
