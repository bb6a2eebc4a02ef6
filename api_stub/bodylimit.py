"""A route's request-body size limit, answered in the API's JSON error shape.

Starlette's RequestBodyLimitMiddleware answers a declared Content-Length over the limit with
its own text/plain 413, substituted in its send wrapper for whatever the route answered. So the
declared length is checked here, before anything runs; Starlette's middleware stays behind it
for bodies without a Content-Length (chunked), where it raises an HTTPException inside the route
that the app's exception handler answers as JSON.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api_stub.errors import error_response


def body_too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "BODY_TOO_LARGE",
        f"the request body is larger than {limit} bytes",
        {"max_bytes": limit},
    )


class BodyLimit:
    """Route middleware: refuse a body over `max_body_size` bytes with a JSON 413."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self.app = RequestBodyLimitMiddleware(app, max_body_size=max_body_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared_length(scope) if scope["type"] == "http" else None
        if declared is not None and declared > self.max_body_size:
            await body_too_large(self.max_body_size)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope).get("content-length", ""))
    except ValueError:
        return None  # absent or malformed: the server and the streamed count deal with it
