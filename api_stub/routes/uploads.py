"""POST /api/uploads: a presigned POST for one input image."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from api_stub.errors import ApiError
from api_stub.routes.common import current_user, parse_body, services
from api_stub.schemas import InputSpec, UploadRequest, UploadView
from api_stub.storage import upload_key


async def create_upload(request: Request) -> JSONResponse:
    svc = services(request)
    user = await current_user(request)
    body = await parse_body(request, UploadRequest)
    settings = svc.settings
    if body.content_type not in settings.upload_content_types:
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"content_type must be one of {', '.join(settings.upload_content_types)}",
            {"field": "content_type"},
        )
    if body.content_length is not None and body.content_length > settings.upload_max_bytes:
        raise ApiError(
            413,
            "UPLOAD_TOO_LARGE",
            f"uploads are limited to {settings.upload_max_bytes} bytes",
            {"field": "content_length"},
        )
    key = upload_key(user.id, body.content_type)
    post = svc.storage.presign_upload(
        key,
        content_type=body.content_type,
        max_bytes=settings.upload_max_bytes,
        ttl_s=settings.upload_ttl_s,
        now=svc.clock(),
    )
    view = UploadView(
        url=post.url,
        fields=post.fields,
        key=post.key,
        expires_at=post.expires_at,
        max_bytes=settings.upload_max_bytes,
        input=InputSpec(key=post.key),
    )
    return JSONResponse(view.model_dump(mode="json", exclude_none=True), status_code=201)
