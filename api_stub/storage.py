"""Storage providers: presigned uploads for users, signed output prefixes for workers, and
short-lived GET URLs for results.

- S3Storage: boto3 presigned POST (content-length-range + exact Content-Type) and GET URLs;
  workers write outputs under `s3://bucket/outputs/<user>/<job>/` with their own credentials.
- LocalStorage: the embedded default. Files live under LOCAL_STORAGE_DIR and this app serves
  them (api_stub.routes.storage); every URL carries an expiry and an HMAC over what it allows.

Key layout: uploads/<user_id>/<uuid>.<ext> and outputs/<user_id>/<job_id>/<name>.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlencode, urlsplit

from api_stub import signing

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
MAX_KEY_CHARS = 512


class SignatureError(Exception):
    """A storage URL or form whose signature, expiry or scope does not hold."""


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    key: str
    expires_at: float


class Storage(Protocol):
    def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, ttl_s: int, now: float
    ) -> PresignedPost: ...
    def presign_get(self, key: str, *, ttl_s: int, now: float) -> str: ...
    def input_url(self, key: str, *, ttl_s: int, now: float) -> str: ...
    def output_prefix(self, prefix_key: str, *, ttl_s: int, now: float) -> str: ...


def upload_key(user_id: str, content_type: str) -> str:
    return f"uploads/{user_id}/{uuid.uuid4()}.{_EXTENSIONS.get(content_type, 'img')}"


def output_prefix_key(user_id: str, job_id: str) -> str:
    return f"outputs/{user_id}/{job_id}/"


def is_safe_key(key: str) -> bool:
    return len(key) <= MAX_KEY_CHARS and bool(_SAFE_KEY.match(key)) and ".." not in key


def key_in_prefix(url: str, prefix_key: str) -> str | None:
    """The object key a reported output URL points at, if it lies under prefix_key.

    Works for s3://bucket/key, path- and virtual-hosted S3 URLs and local storage URLs. A
    worker-reported URL outside the job's own prefix yields None, so a job can never expose
    another job's or user's object.
    """
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return None
    index = path.find("/" + prefix_key)
    if index < 0:
        return None
    key = path[index + 1 :]
    if key == prefix_key or not is_safe_key(key):
        return None
    return key


# --- local ------------------------------------------------------------------------------


class LocalStorage:
    """Files on local disk, reached through this app with HMAC-signed URLs."""

    def __init__(self, root: Path, *, base_url: str, signing_key: bytes):
        self.root = root
        self._base = base_url.rstrip("/")
        self._key = signing_key

    # URLs
    def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, ttl_s: int, now: float
    ) -> PresignedPost:
        expires = int(now + ttl_s)
        policy = _b64_json(
            {"key": key, "content_type": content_type, "max_bytes": max_bytes, "exp": expires}
        )
        fields = {
            "key": key,
            "Content-Type": content_type,
            "policy": policy,
            "signature": signing.hmac_urlsafe(self._key, "POST\n" + policy),
        }
        return PresignedPost(f"{self._base}/storage/upload", fields, key, float(expires))

    def presign_get(self, key: str, *, ttl_s: int, now: float) -> str:
        expires = int(now + ttl_s)
        sig = signing.hmac_urlsafe(self._key, f"GET\n{key}\n{expires}")
        return f"{self._base}/storage/files/{quote(key)}?" + urlencode({"exp": expires, "sig": sig})

    def input_url(self, key: str, *, ttl_s: int, now: float) -> str:
        return self.presign_get(key, ttl_s=ttl_s, now=now)

    def output_prefix(self, prefix_key: str, *, ttl_s: int, now: float) -> str:
        """A URL prefix the worker appends file names to (the query is kept) and PUTs."""
        expires = int(now + ttl_s)
        sig = signing.hmac_urlsafe(self._key, f"PUT\n{prefix_key}\n{expires}")
        query = urlencode({"prefix": prefix_key, "exp": expires, "sig": sig})
        return f"{self._base}/storage/files/{quote(prefix_key)}?{query}"

    # Checks made by the storage routes
    def check_upload(self, fields: dict[str, str], *, now: float) -> dict[str, Any]:
        policy = fields.get("policy", "")
        if not signing.equal(
            signing.hmac_urlsafe(self._key, "POST\n" + policy), fields.get("signature", "")
        ):
            raise SignatureError("bad signature")
        try:
            terms = json.loads(base64.urlsafe_b64decode(policy + "=" * (-len(policy) % 4)))
        except ValueError:
            raise SignatureError("bad policy") from None
        if now > terms["exp"]:
            raise SignatureError("the upload URL has expired")
        if fields.get("key") != terms["key"] or fields.get("Content-Type") != terms["content_type"]:
            raise SignatureError("key or Content-Type differ from the signed policy")
        return terms

    def check_get(self, key: str, *, exp: str, sig: str, now: float) -> None:
        self._check_expiry(exp, now)
        if not signing.equal(signing.hmac_urlsafe(self._key, f"GET\n{key}\n{exp}"), sig):
            raise SignatureError("bad signature")

    def check_put(self, key: str, *, prefix: str, exp: str, sig: str, now: float) -> None:
        self._check_expiry(exp, now)
        if not signing.equal(signing.hmac_urlsafe(self._key, f"PUT\n{prefix}\n{exp}"), sig):
            raise SignatureError("bad signature")
        if not key.startswith(prefix) or key == prefix:
            raise SignatureError("the key lies outside the signed prefix")

    @staticmethod
    def _check_expiry(exp: str, now: float) -> None:
        if not exp.isdigit() or now > int(exp):
            raise SignatureError("the URL has expired")

    # Files
    def path_for(self, key: str) -> Path:
        if not is_safe_key(key):
            raise SignatureError("invalid key")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise SignatureError("invalid key")
        return path


def _b64_json(value: dict[str, Any]) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


# --- S3 -----------------------------------------------------------------------------------


class S3Storage:
    """`client` signs what users fetch; `worker_client` (default: the same) signs input URLs
    for workers, which may reach S3 at another address (a compose network, a VPC endpoint).
    """

    def __init__(self, client: Any, bucket: str, *, worker_client: Any | None = None):
        self._s3 = client
        self._worker_s3 = worker_client or client
        self.bucket = bucket

    def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, ttl_s: int, now: float
    ) -> PresignedPost:
        post = self._s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=ttl_s,
        )
        return PresignedPost(post["url"], dict(post["fields"]), key, now + ttl_s)

    def presign_get(self, key: str, *, ttl_s: int, now: float) -> str:
        return _get_url(self._s3, self.bucket, key, ttl_s)

    def input_url(self, key: str, *, ttl_s: int, now: float) -> str:
        return _get_url(self._worker_s3, self.bucket, key, ttl_s)

    def output_prefix(self, prefix_key: str, *, ttl_s: int, now: float) -> str:
        return f"s3://{self.bucket}/{prefix_key}"


def _get_url(client: Any, bucket: str, key: str, ttl_s: int) -> str:
    return str(
        client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
        )
    )


def make_s3_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    addressing_style: str,
) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": addressing_style}),
    )
