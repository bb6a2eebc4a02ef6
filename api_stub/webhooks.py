"""Verification of worker callbacks (Standard Webhooks, plus the guideline's X-Signature).

A callback verifies when its `webhook-signature` matches under any accepted key:
- the per-job key HMAC(CALLBACK_MASTER_KEY, job_id), which the dispatcher gave the worker in
  auth.callback_hmac. The job id is read from the still-unverified body only to pick that key;
  nothing else in the body is trusted before the signature holds.
- any WEBHOOK_SECRETS entry (whsec_...), so secrets can be rotated by accepting old and new.
The `standardwebhooks` library checks the +-5 minute timestamp window and compares signatures
in constant time. With X_SIGNATURE_ENABLED, X-Signature (base64 HMAC of the raw body) must
verify too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from standardwebhooks import Webhook

from api_stub import signing
from api_stub.jobs import is_uuid
from handler.contract import JobResult

MAX_WEBHOOK_ID_CHARS = 256


class CallbackRejected(Exception):
    """`status` is the HTTP answer: 415 for a body not declared JSON, 401 for signatures, 400
    for a malformed body."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class VerifiedCallback:
    webhook_id: str
    job_id: str
    result: JobResult


class CallbackVerifier:
    def __init__(self, *, master_key: str, secrets: list[str], x_signature: bool = False):
        self._master = master_key
        self._static_keys = [secret_bytes(secret) for secret in secrets]
        self._static = [Webhook(key) for key in self._static_keys]
        self._x_signature = x_signature

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedCallback:
        job_id = _claimed_job_id(body)
        hooks = list(self._static)
        keys = list(self._static_keys)
        if job_id is not None:
            job_key = signing.callback_key(self._master, job_id)
            hooks.insert(0, Webhook(job_key))
            keys.insert(0, job_key)
        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        if not webhook_id or len(webhook_id) > MAX_WEBHOOK_ID_CHARS:
            raise CallbackRejected(401, "BAD_SIGNATURE", "missing or invalid webhook-id")
        if not any(_verifies(hook, body, lowered) for hook in hooks):
            raise CallbackRejected(401, "BAD_SIGNATURE", "no valid webhook signature")
        if self._x_signature and not _x_signature_ok(keys, body, lowered.get("x-signature", "")):
            raise CallbackRejected(401, "BAD_SIGNATURE", "X-Signature does not verify")
        try:
            result = JobResult.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise CallbackRejected(400, "MALFORMED_CALLBACK", f"{field}: {first['msg']}") from None
        if job_id is None or result.job_id is None or result.job_id.lower() != job_id:
            raise CallbackRejected(400, "MALFORMED_CALLBACK", "job_id: a UUID is required")
        return VerifiedCallback(webhook_id=webhook_id, job_id=job_id, result=result)


def secret_bytes(secret: str) -> bytes:
    """The key inside a `whsec_<base64>` secret."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise ValueError("a webhook secret must be whsec_ followed by base64") from None
    if len(key) < 24:
        raise ValueError("a webhook secret must hold at least 24 bytes")
    return key


def _claimed_job_id(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    job_id = parsed.get("job_id") if isinstance(parsed, dict) else None
    if isinstance(job_id, str) and is_uuid(job_id):
        return job_id.lower()
    return None


def _verifies(hook: Webhook, body: bytes, headers: Mapping[str, str]) -> bool:
    try:
        hook.verify(body, dict(headers), json_parse=False)
    except Exception:
        # The library raises its own error for bad signatures and stale timestamps, and
        # ValueError/binascii.Error/UnicodeDecodeError for malformed headers or bodies.
        return False
    return True


def _x_signature_ok(keys: list[bytes], body: bytes, given: str) -> bool:
    if not given:
        return False
    matches = [signing.equal(signing.hmac_b64(key, body), given) for key in keys]
    return any(matches)  # every key is compared, so timing does not reveal which one matched
