"""Operational routes: /metrics, /openapi.json and /healthz."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api_stub.openapi import openapi_document
from api_stub.routes.common import services


async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(services(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(services(request).settings))


async def healthz(request: Request) -> JSONResponse:
    svc = services(request)

    def ping() -> None:
        with svc.db.transaction(write=False) as tx:
            tx.one("SELECT 1 AS ok")

    await run_in_threadpool(ping)
    return JSONResponse({"ok": True})
