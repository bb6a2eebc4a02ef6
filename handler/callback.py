"""Signed job callbacks: key choice, signing (X-Signature + Standard Webhooks), delivery."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from handler.errors import ErrorCode, JobError
from handler.settings import Settings

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
RETRYABLE_4XX = frozenset({408, 429})


def resolve_key(callback_hmac: str | None, settings: Settings) -> bytes:
    """The per-job key when it decodes to >= 32 bytes, else CALLBACK_SECRET, else fail."""
    if callback_hmac:
        try:
            key = base64.b64decode(callback_hmac, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) >= MIN_KEY_BYTES:
            return key
    if settings.callback_secret is not None:
        secret = settings.callback_secret.get_secret_value()
        if secret.startswith("whsec_"):
            # Standard Webhooks secrets are base64 after the prefix.
            return base64.b64decode(secret.removeprefix("whsec_"))
        return secret.encode()
    raise JobError(
        ErrorCode.CALLBACK_KEY_MISSING,
        "auth.callback_hmac must decode to at least 32 bytes (or set CALLBACK_SECRET)",
        {"field": "auth.callback_hmac"},
    )


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def sign_headers(body: bytes, key: bytes, *, message_id: str, timestamp: int) -> dict[str, str]:
    """Headers signing the exact raw body both ways."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return {
        "content-type": "application/json",
        "x-signature": _b64_hmac(key, body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{_b64_hmac(key, signed)}",
    }


@dataclass(frozen=True)
class DeliveryReport:
    delivered: bool
    attempts: int
    status_code: int | None
    seconds: float


def _retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


async def deliver(
    url: str,
    body: bytes,
    key: bytes,
    *,
    message_id: str,
    settings: Settings,
    http: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.time,
) -> DeliveryReport:
    """POST the signed body with bounded exponential backoff.

    Retries 5xx, 408, 429, timeouts and connection errors; stops on other 4xx. The
    webhook-id stays the same across attempts so the receiver can deduplicate; the
    timestamp (and so the signature) is fresh per attempt to stay inside its window.
    """
    started = time.monotonic()
    status: int | None = None
    attempt = 0
    for attempt in range(1, settings.callback_max_attempts + 1):
        headers = sign_headers(body, key, message_id=message_id, timestamp=int(clock()))
        try:
            response = await http.post(
                url, content=body, headers=headers, timeout=settings.callback_timeout_s
            )
            status = response.status_code
            if status < 300:
                return DeliveryReport(True, attempt, status, time.monotonic() - started)
            if not _retryable(status):
                log.warning("callback refused", extra={"status": status, "attempt": attempt})
                break
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            status = None
            log.warning(
                "callback attempt failed",
                extra={"error": type(exc).__name__, "attempt": attempt},
            )
        if attempt < settings.callback_max_attempts:
            delay = settings.callback_backoff_s * (2 ** (attempt - 1))
            await sleep(delay * random.uniform(0.8, 1.2))
    return DeliveryReport(False, attempt, status, time.monotonic() - started)
