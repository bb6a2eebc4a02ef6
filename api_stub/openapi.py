"""The OpenAPI 3.1 document, built from the pydantic models of api_stub.schemas.

The operation table below is written independently of the route table in api_stub.app; a test
checks that the two describe the same paths and methods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api_stub import schemas
from api_stub.settings import ApiSettings
from handler.contract import JobResult

REF = "#/components/schemas/{model}"
_ERR = schemas.ErrorResponse


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    body: type[BaseModel] | None = None
    body_type: str = "application/json"
    auth: bool = True
    headers: tuple[tuple[str, str, bool], ...] = ()  # name, description, required
    query: tuple[tuple[str, str, bool], ...] = ()
    tags: tuple[str, ...] = field(default=("jobs",))


_AUTH_ERRORS: dict[int, tuple[str, type[BaseModel] | None]] = {401: ("No valid API key.", _ERR)}
# Every route with a JSON body: checked before any work, so nothing is created or charged.
_BODY_ERRORS: dict[int, tuple[str, type[BaseModel] | None]] = {
    413: ("BODY_TOO_LARGE: the body is over 4 MiB.", _ERR),
    415: ("UNSUPPORTED_MEDIA_TYPE: the body is not declared application/json (UTF-8).", _ERR),
}

OPERATIONS: tuple[Op, ...] = (
    Op(
        "post",
        "/api/jobs",
        "Create a job (QUEUED); holds its credits.",
        {
            201: ("Created.", schemas.JobView),
            200: ("Replay of an earlier request with the same Idempotency-Key.", schemas.JobView),
            400: ("Malformed JSON or Idempotency-Key.", _ERR),
            **_AUTH_ERRORS,
            402: ("Not enough credits.", _ERR),
            **_BODY_ERRORS,
            422: ("Invalid type, params or inputs; the message names the field.", _ERR),
            429: ("Rate limited; see Retry-After.", _ERR),
        },
        body=schemas.CreateJob,
        headers=(("Idempotency-Key", "Replays the first result for the same key.", False),),
    ),
    Op(
        "post",
        "/api/jobs/batch",
        "Create up to BATCH_MAX_JOBS jobs atomically.",
        {
            201: ("Created.", schemas.BatchView),
            200: ("Replay of an earlier request with the same Idempotency-Key.", schemas.BatchView),
            400: ("Malformed JSON or Idempotency-Key.", _ERR),
            **_AUTH_ERRORS,
            402: ("Not enough credits for the whole batch.", _ERR),
            **_BODY_ERRORS,
            422: ("A job is invalid; nothing was created.", _ERR),
            429: ("Rate limited; see Retry-After.", _ERR),
        },
        body=schemas.CreateBatch,
        headers=(("Idempotency-Key", "Replays the first result for the same key.", False),),
    ),
    Op(
        "get",
        "/api/jobs/{job_id}",
        "A job's status, outputs (presigned GET URLs), error and timings.",
        {200: ("The job.", schemas.JobView), **_AUTH_ERRORS, 404: ("No such job of yours.", _ERR)},
    ),
    Op(
        "post",
        "/api/jobs/{job_id}/cancel",
        "Cancel a job (also on Runpod); its hold is released.",
        {
            200: ("Cancelled.", schemas.JobView),
            **_AUTH_ERRORS,
            404: ("No such job of yours.", _ERR),
            409: ("Already finished.", _ERR),
            **_BODY_ERRORS,  # a body is optional; one that is sent must be JSON
        },
    ),
    Op(
        "post",
        "/api/uploads",
        "A presigned POST for one input image (size and content type enforced).",
        {
            201: ("The form to POST.", schemas.UploadView),
            400: ("Malformed JSON.", _ERR),
            **_AUTH_ERRORS,
            413: (
                "BODY_TOO_LARGE, or UPLOAD_TOO_LARGE: content_length over UPLOAD_MAX_BYTES.",
                _ERR,
            ),
            415: ("UNSUPPORTED_MEDIA_TYPE: body not JSON, or content_type not accepted.", _ERR),
            422: ("Invalid body.", _ERR),
        },
        body=schemas.UploadRequest,
        tags=("uploads",),
    ),
    Op(
        "get",
        "/api/me",
        "The caller's credit balance.",
        {200: ("The balance.", schemas.BalanceView), **_AUTH_ERRORS},
        tags=("account",),
    ),
    Op(
        "post",
        "/api/webhooks/runpod",
        "Worker callback, signed with Standard Webhooks (per-job key or WEBHOOK_SECRETS).",
        {
            200: ("Applied, ignored (job already final) or duplicate.", schemas.CallbackAck),
            400: ("Malformed body.", _ERR),
            401: ("Invalid signature or timestamp.", _ERR),
            404: ("Unknown job.", _ERR),
            **_BODY_ERRORS,
        },
        body=JobResult,
        auth=False,
        headers=(
            ("webhook-id", "Message id; deliveries are deduplicated on it.", True),
            ("webhook-timestamp", "Unix seconds; accepted within +-5 minutes.", True),
            ("webhook-signature", "Space-separated `v1,<base64 HMAC-SHA256>`.", True),
            ("X-Signature", "Base64 HMAC-SHA256 of the body (when X_SIGNATURE_ENABLED).", False),
        ),
        tags=("webhooks",),
    ),
    Op(
        "post",
        "/storage/upload",
        "Local storage: the presigned POST target (multipart: the given fields, then file).",
        {
            204: ("Stored.", None),
            403: ("Bad or expired signature.", _ERR),
            413: ("Too large.", _ERR),
        },
        body_type="multipart/form-data",
        auth=False,
        tags=("storage",),
    ),
    Op(
        "get",
        "/storage/files/{key}",
        "Local storage: signed GET of an object.",
        {
            200: ("The object.", None),
            403: ("Bad or expired signature.", _ERR),
            404: ("Missing.", _ERR),
        },
        auth=False,
        query=(("exp", "Expiry, unix seconds.", True), ("sig", "HMAC signature.", True)),
        tags=("storage",),
    ),
    Op(
        "put",
        "/storage/files/{key}",
        "Local storage: a worker's PUT under a signed output prefix.",
        {
            200: ("Stored.", None),
            403: ("Bad signature or outside the prefix.", _ERR),
            413: ("Too large.", _ERR),
        },
        body_type="application/octet-stream",
        auth=False,
        query=(
            ("prefix", "The signed key prefix.", True),
            ("exp", "Expiry, unix seconds.", True),
            ("sig", "HMAC signature.", True),
        ),
        tags=("storage",),
    ),
    Op(
        "get",
        "/metrics",
        "Prometheus metrics.",
        {200: ("Text exposition format.", None)},
        auth=False,
        tags=("operations",),
    ),
    Op(
        "get",
        "/healthz",
        "Liveness with a database round trip.",
        {200: ("Healthy.", None)},
        auth=False,
        tags=("operations",),
    ),
    Op(
        "get",
        "/openapi.json",
        "This document.",
        {200: ("OpenAPI 3.1.", None)},
        auth=False,
        tags=("operations",),
    ),
)


def openapi_document(settings: ApiSettings) -> dict[str, Any]:
    doc = dict(_static_document())
    doc["servers"] = [{"url": settings.public_base_url}]
    return doc


@lru_cache(maxsize=1)
def _static_document() -> dict[str, Any]:
    models = {m for op in OPERATIONS for m in _models(op)}
    keyed, top = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    refs = {model: keyed[(model, "validation")]["$ref"] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SimplyPNG control plane",
            "version": "1.0.0",
            "description": "Jobs, credits, uploads and the signed worker callback.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def _models(op: Op) -> list[type[BaseModel]]:
    found = [model for _, model in op.responses.values() if model is not None]
    return found + ([op.body] if op.body is not None else [])


def _operation(op: Op, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {"name": n, "in": "header", "required": r, "description": d, "schema": {"type": "string"}}
        for n, d, r in op.headers
    ]
    params += [
        {"name": n, "in": "query", "required": r, "description": d, "schema": {"type": "string"}}
        for n, d, r in op.query
    ]
    operation: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_')}",
        "tags": list(op.tags),
        "responses": {
            str(code): _response(description, refs.get(model) if model else None)
            for code, (description, model) in sorted(op.responses.items())
        },
    }
    if params:
        operation["parameters"] = params
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {op.body_type: {"schema": {"$ref": refs[op.body]}}},
        }
    elif op.body_type != "application/json":
        operation["requestBody"] = {"required": True, "content": {op.body_type: {}}}
    operation["security"] = [{"apiKey": []}] if op.auth else []
    return operation


def _response(description: str, ref: str | None) -> dict[str, Any]:
    if ref is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}
