"""Fetching job inputs: https:// (http:// if allowed), s3://bucket/key and data: URIs.

Every path enforces `settings.max_input_bytes` while reading, never after. HTTP fetches go
through url_guard's client (address policy checked at connect time, on every redirect hop),
follow at most MAX_REDIRECTS redirects by hand, and retry only 5xx responses and timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from handler.decode import DecodedImage, decode_image
from handler.errors import ErrorCode, JobError
from handler.settings import Settings
from handler.storage import S3ClientFactory, Sleep, backoff_delay, cached_s3_client_factory
from handler.url_guard import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    ForbiddenAddress,
    GuardedClient,
    ParsedTarget,
    ResolveError,
    Resolver,
    check_url,
    make_http_client,
)

log = logging.getLogger(__name__)


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _too_large(shown: str, cap: int) -> JobError:
    return JobError(ErrorCode.INPUT_TOO_LARGE, f"input {shown} is larger than {cap} bytes")


def _fetch_failed(shown: str, reason: str) -> JobError:
    return JobError(ErrorCode.INPUT_FETCH_FAILED, f"could not download {shown}: {reason}")


async def fetch_bytes(
    url: str,
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    s3_client_factory: S3ClientFactory | None = None,
    sleep: Sleep = asyncio.sleep,
    resolve: Resolver | None = None,
) -> bytes:
    """Download one input, capped at settings.max_input_bytes.

    `http` should come from url_guard.make_http_client (shared across a job's inputs); when it
    is omitted or is not such a client, a guarded client is built for this call, using
    `resolve` if given (tests).
    Raises JobError: INPUT_FORBIDDEN_URL, INPUT_FETCH_FAILED, INPUT_TOO_LARGE, INPUT_NOT_IMAGE
    (malformed data: URI).
    """
    target = check_url(url, settings)
    if target.scheme == "data":
        return decode_data_uri(url, settings.max_input_bytes)
    if target.scheme == "s3":
        return await _fetch_s3(target, settings, s3_client_factory)
    if isinstance(http, GuardedClient):
        return await _fetch_http(target, settings, http, sleep)
    if http is not None:
        # A plain client would connect wherever DNS points at connect time; never use one.
        log.warning("fetch_bytes got an unguarded httpx client; using a guarded one instead")
    async with make_http_client(settings, resolve=resolve) as client:
        return await _fetch_http(target, settings, client, sleep)


async def load_input(
    url: str,
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    s3_client_factory: S3ClientFactory | None = None,
    sleep: Sleep = asyncio.sleep,
) -> DecodedImage:
    """fetch_bytes + decode_image (in a thread), with the pixel cap from settings."""
    data = await fetch_bytes(
        url, settings, http=http, s3_client_factory=s3_client_factory, sleep=sleep
    )
    return await asyncio.to_thread(decode_image, data, max_pixels=settings.max_input_pixels)


def decode_data_uri(url: str, max_bytes: int) -> bytes:
    """Decode `data:[<type>][;base64],<payload>`; the media type is ignored (content is sniffed).

    Sizes are checked before decoding, from the encoded length.
    """
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise JobError(ErrorCode.INPUT_NOT_IMAGE, "malformed data: URI (no comma)")
    is_base64 = header.lower().endswith(";base64")
    if is_base64:
        if "%" in payload:  # some clients percent-encode the base64 alphabet's + / =
            payload = unquote_to_bytes(payload).decode("ascii", "replace")
        payload = "".join(payload.split())
        if len(payload) // 4 * 3 > max_bytes + 2:
            raise _too_large("data: URI", max_bytes)
        try:
            data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise JobError(ErrorCode.INPUT_NOT_IMAGE, "data: URI is not valid base64") from None
    else:
        if len(payload) > max_bytes * 3:  # "%xx" is the longest encoding of one byte
            raise _too_large("data: URI", max_bytes)
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _too_large("data: URI", max_bytes)
    return data


async def _fetch_http(
    target: ParsedTarget, settings: Settings, client: httpx.AsyncClient, sleep: Sleep
) -> bytes:
    attempts = settings.fetch_max_attempts
    for attempt in range(1, attempts + 1):
        try:
            return await _get_following_redirects(target, settings, client)
        except _Retryable as exc:
            log.info(
                "input fetch failed",
                extra={
                    "url": target.safe_url,
                    "reason": exc.reason,
                    "attempt": attempt,
                    "attempts": attempts,
                },
            )
            if attempt == attempts:
                reason = f"{exc.reason} after {attempts} attempt{'s' if attempts > 1 else ''}"
                raise _fetch_failed(target.safe_url, reason) from None
            await sleep(backoff_delay(attempt))
    raise AssertionError("unreachable")  # the loop returns or raises


async def _get_following_redirects(
    target: ParsedTarget, settings: Settings, client: httpx.AsyncClient
) -> bytes:
    timeout = httpx.Timeout(settings.fetch_read_timeout_s, connect=settings.fetch_connect_timeout_s)
    current = target
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            async with client.stream("GET", current.url, timeout=timeout) as response:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise _fetch_failed(current.safe_url, f"HTTP {status} without Location")
                    # Every hop passes the scheme/host policy again; its connection passes the
                    # address policy in the guarded transport.
                    next_url = urljoin(str(response.url), location)
                    current = check_url(next_url, settings, http_only=True)
                    continue
                if status >= 500:
                    raise _Retryable(f"HTTP {status}")
                if not response.is_success:
                    raise _fetch_failed(current.safe_url, f"HTTP {status}")
                return await _read_capped(response, settings.max_input_bytes, current.safe_url)
        except ForbiddenAddress:
            # Raised from inside the guarded transport: name the URL (not the address, which
            # would map internal DNS for the caller).
            raise JobError(
                ErrorCode.INPUT_FORBIDDEN_URL,
                f"{current.safe_url} resolves to a non-public address",
            ) from None
        except httpx.InvalidURL:
            # httpx prepares the next request for every redirect, even when not following it,
            # and fails on a Location it cannot parse (data: URIs among them).
            raise JobError(
                ErrorCode.INPUT_FORBIDDEN_URL,
                f"{current.safe_url} redirected to a URL that is not allowed",
            ) from None
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:
            reason = (
                "DNS lookup failed"
                if isinstance(exc.__cause__, ResolveError)
                else f"connection failed ({type(exc).__name__})"
            )
            raise _fetch_failed(current.safe_url, reason) from None
    raise _fetch_failed(target.safe_url, f"more than {MAX_REDIRECTS} redirects")


async def _read_capped(response: httpx.Response, cap: int, shown: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(shown, cap)
    body = bytearray()
    # aiter_bytes yields decoded bytes, so the cap also bounds gzip/deflate expansion.
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            raise _too_large(shown, cap)
    return bytes(body)


def input_s3_client_factory(settings: Settings) -> S3ClientFactory:
    return cached_s3_client_factory(
        settings,
        max_attempts=settings.fetch_max_attempts,
        read_timeout=settings.fetch_read_timeout_s,
    )


async def _fetch_s3(
    target: ParsedTarget, settings: Settings, factory: S3ClientFactory | None
) -> bytes:
    # botocore's standard retry mode retries 5xx, throttling and timeouts, never 4xx.
    factory = factory or input_s3_client_factory(settings)
    return await asyncio.to_thread(_read_s3_object, factory, target, settings.max_input_bytes)


def _read_s3_object(factory: S3ClientFactory, target: ParsedTarget, cap: int) -> bytes:
    shown = target.safe_url
    client: Any = factory()
    try:
        obj = client.get_object(Bucket=target.bucket, Key=target.key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or "error"
        raise _fetch_failed(shown, f"S3 {code}") from None
    except BotoCoreError as exc:
        raise _fetch_failed(shown, f"S3 {type(exc).__name__}") from None
    body = obj["Body"]
    try:
        if int(obj.get("ContentLength") or 0) > cap:
            raise _too_large(shown, cap)
        data = body.read(cap + 1)  # never more than cap + 1 bytes in memory
    except BotoCoreError as exc:
        raise _fetch_failed(shown, f"S3 {type(exc).__name__}") from None
    finally:
        body.close()
    if len(data) > cap:
        raise _too_large(shown, cap)
    return data
