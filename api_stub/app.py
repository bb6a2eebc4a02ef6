"""The Starlette application: routes wired to their handlers, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from api_stub.errors import ApiError, api_error_handler
from api_stub.routes import account, jobs, meta, storage, uploads, webhooks
from api_stub.services import Services
from api_stub.settings import ApiSettings

API_BODY_LIMIT = 4 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024


def routes(settings: ApiSettings) -> list[BaseRoute]:
    api = {"max_body_size": API_BODY_LIMIT}
    return [
        Route("/api/jobs", jobs.create_job, methods=["POST"], **api),
        Route("/api/jobs/batch", jobs.create_batch, methods=["POST"], **api),
        Route("/api/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}/cancel", jobs.cancel_job, methods=["POST"], **api),
        Route("/api/uploads", uploads.create_upload, methods=["POST"], **api),
        Route("/api/me", account.get_me, methods=["GET"]),
        Route("/api/webhooks/runpod", webhooks.runpod_webhook, methods=["POST"], **api),
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
        exception_handlers={ApiError: api_error_handler},
        lifespan=lifespan,
    )
    app.state.services = svc
    return app
