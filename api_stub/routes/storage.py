"""Local storage provider routes (STORAGE=local): signed upload form, signed GET, signed PUT.

They mirror S3's presigned POST and GET, and a signed output prefix for workers, so the demo
runs the same flow without a bucket.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from api_stub.errors import ApiError
from api_stub.routes.common import services
from api_stub.storage import LocalStorage, SignatureError

_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/webp": (b"RIFF",),
}
_SERVE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
_CHUNK = 1024 * 1024


def _local(request: Request) -> LocalStorage:
    storage = services(request).storage
    if not isinstance(storage, LocalStorage):
        raise ApiError(404, "NOT_FOUND", "local storage is not enabled")
    return storage


async def upload(request: Request) -> Response:
    storage = _local(request)
    svc = services(request)
    async with request.form(max_files=1, max_fields=10) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        file = form.get("file")
        try:
            terms = storage.check_upload(fields, now=svc.clock())
            path = storage.path_for(terms["key"])
        except SignatureError as exc:
            raise ApiError(403, "FORBIDDEN", str(exc)) from None
        if not isinstance(file, UploadFile):
            raise ApiError(400, "MISSING_FILE", "the form needs a `file` part")
        size = file.size if file.size is not None else 0
        if not 1 <= size <= int(terms["max_bytes"]):
            raise ApiError(413, "UPLOAD_TOO_LARGE", "the file is outside content-length-range")
        head = await file.read(16)
        if not head.startswith(_MAGIC.get(terms["content_type"], (b"",))):
            raise ApiError(
                415, "UNSUPPORTED_MEDIA_TYPE", "the file does not match its Content-Type"
            )
        await file.seek(0)
        await run_in_threadpool(_write_file, path, file.file)
    return Response(status_code=204)


async def download(request: Request) -> Response:
    storage = _local(request)
    key = request.path_params["key"]
    try:
        storage.check_get(
            key,
            exp=request.query_params.get("exp", ""),
            sig=request.query_params.get("sig", ""),
            now=services(request).clock(),
        )
        path = storage.path_for(key)
    except SignatureError as exc:
        raise ApiError(403, "FORBIDDEN", str(exc)) from None
    if not path.is_file():
        raise ApiError(404, "NOT_FOUND", "no such object")
    media_type = _SERVE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


async def put_object(request: Request) -> Response:
    storage = _local(request)
    svc = services(request)
    key = request.path_params["key"]
    try:
        storage.check_put(
            key,
            prefix=request.query_params.get("prefix", ""),
            exp=request.query_params.get("exp", ""),
            sig=request.query_params.get("sig", ""),
            now=svc.clock(),
        )
        path = storage.path_for(key)
    except SignatureError as exc:
        raise ApiError(403, "FORBIDDEN", str(exc)) from None
    limit = svc.settings.output_max_bytes
    with tempfile.SpooledTemporaryFile(max_size=_CHUNK) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "OBJECT_TOO_LARGE", f"objects are limited to {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        await run_in_threadpool(_write_file, path, spool)
    return Response(status_code=200)


def _write_file(path: Path, source: object) -> None:
    """Write atomically: a reader never sees a half-written object."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):  # type: ignore[attr-defined]
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
