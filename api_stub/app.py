"""The Starlette application: routes wired to their handlers, every error answered as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api_stub.errors import ApiError, api_error_handler, error_response
from api_stub.routes import account, jobs, meta, storage, uploads, webhooks
from api_stub.services import Services
from api_stub.settings import ApiSettings

API_BODY_LIMIT = 4 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024


def routes(settings: ApiSettings) -> list[BaseRoute]:
    return [
        Route("/api/jobs", jobs.create_job, methods=["POST"], max_body_size=API_BODY_LIMIT),
        Route("/api/jobs/batch", jobs.create_batch, methods=["POST"], max_body_size=API_BODY_LIMIT),
        Route("/api/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route(
            "/api/jobs/{job_id}/cancel",
            jobs.cancel_job,
            methods=["POST"],
            max_body_size=API_BODY_LIMIT,
        ),
        Route(
            "/api/uploads", uploads.create_upload, methods=["POST"], max_body_size=API_BODY_LIMIT
        ),
        Route("/api/me", account.get_me, methods=["GET"]),
        Route(
            "/api/webhooks/runpod",
            webhooks.runpod_webhook,
            methods=["POST"],
            max_body_size=API_BODY_LIMIT,
        ),
        Route(
            "/storage/upload",
            storage.upload,
            methods=["POST"],
            max_body_size=settings.upload_max_bytes + FORM_OVERHEAD,
        ),
        Route("/storage/files/{key:path}", storage.download, methods=["GET"]),
        Route(
            "/storage/files/{key:path}",
            storage.put_object,
            methods=["PUT"],
            max_body_size=settings.output_max_bytes,
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
    limit) in the API's JSON error shape rather than text/plain; 405's Allow header is kept.
    A declared Content-Length over the limit still gets Starlette's text/plain 413: its
    body-limit middleware answers that before any handler runs."""
    assert isinstance(exc, HTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, exc.detail, headers=headers)


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
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
        lifespan=lifespan,
    )
    app.state.services = svc
    return app
