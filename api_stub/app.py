"""The Starlette application: routes wired to their handlers, every error answered as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api_stub.bodylimit import BodyLimit, body_too_large
from api_stub.errors import ApiError, api_error_handler, error_response
from api_stub.routes import account, jobs, meta, storage, uploads, webhooks
from api_stub.services import Services
from api_stub.settings import ApiSettings

API_BODY_LIMIT = 4 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024


def _with_body(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str, limit: int
) -> Route:
    """A route that reads a body of at most `limit` bytes (a JSON 413 beyond)."""
    return Route(
        path, endpoint, methods=[method], middleware=[Middleware(BodyLimit, max_body_size=limit)]
    )


def routes(settings: ApiSettings) -> list[BaseRoute]:
    return [
        _with_body("/api/jobs", jobs.create_job, "POST", API_BODY_LIMIT),
        _with_body("/api/jobs/batch", jobs.create_batch, "POST", API_BODY_LIMIT),
        Route("/api/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        _with_body("/api/jobs/{job_id}/cancel", jobs.cancel_job, "POST", API_BODY_LIMIT),
        _with_body("/api/uploads", uploads.create_upload, "POST", API_BODY_LIMIT),
        Route("/api/me", account.get_me, methods=["GET"]),
        _with_body("/api/webhooks/runpod", webhooks.runpod_webhook, "POST", API_BODY_LIMIT),
        _with_body(
            "/storage/upload", storage.upload, "POST", settings.upload_max_bytes + FORM_OVERHEAD
        ),
        Route("/storage/files/{key:path}", storage.download, methods=["GET"]),
        _with_body(
            "/storage/files/{key:path}", storage.put_object, "PUT", settings.output_max_bytes
        ),
        Route("/metrics", meta.metrics, methods=["GET"]),
        Route("/healthz", meta.healthz, methods=["GET"]),
        Route("/openapi.json", meta.openapi, methods=["GET"]),
    ]


# Codes for the errors Starlette raises itself, beside the API's own (api_stub/errors.py).
HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method, a streamed body over a route's
    limit, a malformed form) in the API's JSON error shape; 405's Allow header is kept."""
    assert isinstance(exc, HTTPException)
    limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    if exc.status_code == 413 and isinstance(limit, int):
        return body_too_large(limit)
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, exc.detail, headers=headers)


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Any unhandled exception: a JSON 500 that tells the client nothing of it. Starlette
    re-raises it after this answer, so the server still logs the traceback."""
    return error_response(500, "INTERNAL_ERROR", "internal server error")


def create_app(settings: ApiSettings, *, services: Services | None = None) -> Starlette:
    """Build the app; `services` lets tests inject a database, storage or Runpod client."""
    svc = services or Services.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if services is None:  # injected services belong to the caller
            svc.close()

    app = Starlette(
        routes=routes(settings),
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
        lifespan=lifespan,
    )
    app.state.services = svc
    return app
