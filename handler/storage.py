"""Where finished outputs go: S3, PUT under a signed prefix, or a list of presigned PUT URLs.

All providers share one interface (`OutputStore.put`) and one retry rule: transient failures
(HTTP 5xx and 429, timeouts, connection errors) are retried with jittered exponential backoff;
the last failure becomes JobError(OUTPUT_UPLOAD_FAILED) whose message names the file and a
redacted target (never a query string or credentials).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from handler.contract import JobPayload, OutputTarget
from handler.errors import ErrorCode, JobError
from handler.settings import Settings
from handler.url_guard import ForbiddenAddress, check_url, redact_url

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
S3ClientFactory = Callable[[], Any]
"""Returns a boto3 S3 client; called in a worker thread (client creation blocks)."""

RETRYABLE_HTTP_STATUS = frozenset({429, *range(500, 600)})
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
     "ServiceUnavailable", "RequestLimitExceeded"}
)  # fmt: skip
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class OutputStore(Protocol):
    async def put(self, name: str, data: bytes, content_type: str) -> str:
        """Store one output; return the URL to report for it."""
        ...


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.2,
    cap: float = 5.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay after failed attempt `attempt` (1-based): exponential with "equal jitter".

    Half the step is fixed and half random, so retries from many workers spread out but none
    retries immediately.
    """
    step = min(cap, base * 2 ** (attempt - 1))
    return step / 2 + rng() * step / 2


def make_s3_client(
    settings: Settings, *, max_attempts: int, connect_timeout: float, read_timeout: float
) -> Any:
    """A boto3 S3 client for the configured endpoint (AWS when unset) and credentials.

    Credentials come from settings when both parts are set, else boto3's usual chain.
    Checksums are computed only when required: boto3 >= 1.36 sends CRC32 trailers by default,
    which several S3-compatible stores (R2, older MinIO, Supabase) reject.
    """
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    credentials: dict[str, str] = {}
    if key_id is not None and secret is not None:
        credentials = {
            "aws_access_key_id": key_id.get_secret_value(),
            "aws_secret_access_key": secret.get_secret_value(),
        }
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A fresh Session per client: boto3's default session is not thread-safe to create from.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config, **credentials)


def _check_name(name: str) -> None:
    # Names are chosen by the worker, not the caller; anything else is a programming error.
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"unsafe output name {name!r}")


class _AttemptFailed(Exception):
    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


async def _with_retries(
    operation: Callable[[], Awaitable[None]],
    *,
    name: str,
    target: str,
    attempts: int,
    sleep: Sleep,
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await operation()
            return
        except _AttemptFailed as exc:
            log.warning(
                "upload of %s to %s failed (attempt %d/%d): %s",
                name, target, attempt, attempts, exc.reason,
            )  # fmt: skip
            if not exc.transient or attempt == attempts:
                raise JobError(
                    ErrorCode.OUTPUT_UPLOAD_FAILED,
                    f"could not upload {name} to {target}: {exc.reason} "
                    f"(after {attempt} attempt{'s' if attempt > 1 else ''})",
                ) from None
            await sleep(backoff_delay(attempt))


async def _http_put(
    http: httpx.AsyncClient, url: str, data: bytes, content_type: str, timeout: float
) -> None:
    """One PUT attempt; raises _AttemptFailed without ever echoing the URL."""
    try:
        response = await http.put(
            url, content=data, headers={"Content-Type": content_type}, timeout=timeout
        )
    except httpx.TimeoutException:
        raise _AttemptFailed("timed out", transient=True) from None
    except httpx.TransportError as exc:
        raise _AttemptFailed(f"connection failed ({type(exc).__name__})", transient=True) from None
    except ForbiddenAddress as exc:  # the guarded transport refused the address
        raise _AttemptFailed(exc.message, transient=False) from None
    except httpx.InvalidURL:  # a redirect answer with an unusable Location
        raise _AttemptFailed("invalid redirect", transient=False) from None
    if response.is_success:
        return
    reason = f"HTTP {response.status_code}"
    raise _AttemptFailed(reason, transient=response.status_code in RETRYABLE_HTTP_STATUS)


def _target_error(field: str, exc: JobError) -> JobError:
    return JobError(ErrorCode.INVALID_PAYLOAD, f"{field}: {exc.message}", {"field": field})


class S3Store:
    """PUT objects under s3://bucket/prefix with boto3 (blocking calls run in a thread).

    botocore's own retry is limited to one attempt so `settings.upload_max_attempts` is the
    single retry knob, with the same backoff as the HTTP providers.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        settings: Settings,
        *,
        client_factory: S3ClientFactory | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._settings = settings
        self._factory = client_factory or output_s3_client_factory(settings)
        self._client: Any = None
        self._sleep = sleep

    @classmethod
    def from_url(cls, url: str, settings: Settings, **kwargs: Any) -> S3Store:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc or "@" in parts.netloc:
            raise ValueError("expected s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError("s3 prefixes take no query or fragment")
        return cls(parts.netloc, _as_folder(parts.path.lstrip("/")), settings, **kwargs)

    async def put(self, name: str, data: bytes, content_type: str) -> str:
        _check_name(name)
        key = self.prefix + name
        url = f"s3://{self.bucket}/{key}"
        if self._client is None:
            self._client = await asyncio.to_thread(self._factory)
        client = self._client

        async def attempt() -> None:
            try:
                await asyncio.to_thread(
                    client.put_object,
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ContentType=content_type,
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = str(error.get("Code") or status)
                transient = status in RETRYABLE_HTTP_STATUS or code in _TRANSIENT_S3_CODES
                raise _AttemptFailed(f"S3 {code}", transient=transient) from None
            except (BotoConnectionError, HTTPClientError) as exc:
                raise _AttemptFailed(f"S3 {type(exc).__name__}", transient=True) from None
            except BotoCoreError as exc:  # credentials, parameters: retrying cannot help
                raise _AttemptFailed(f"S3 {type(exc).__name__}", transient=False) from None

        await _with_retries(
            attempt,
            name=name,
            target=url,
            attempts=self._settings.upload_max_attempts,
            sleep=self._sleep,
        )
        return url


class PrefixPutStore:
    """HTTP PUT to prefix + name, keeping the prefix's query string (a signed-prefix token).

    The reported URL drops the query string so the token never reaches the client.
    """

    def __init__(
        self,
        prefix_url: str,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        check_url(prefix_url, settings, http_only=True)
        parts = urlsplit(prefix_url)
        self._parts = parts._replace(path=_as_folder(parts.path) or "/")
        self._settings = settings
        self._http = http
        self._sleep = sleep

    def urls_for(self, name: str) -> tuple[str, str]:
        """(PUT URL with the query kept, reported URL without it)."""
        _check_name(name)
        scheme, netloc, path, query, _ = self._parts
        path = path + quote(name, safe="")
        return urlunsplit((scheme, netloc, path, query, "")), urlunsplit(
            (scheme, netloc, path, "", "")
        )

    async def put(self, name: str, data: bytes, content_type: str) -> str:
        put_url, public_url = self.urls_for(name)
        timeout = self._settings.upload_timeout_s
        await _with_retries(
            lambda: _http_put(self._http, put_url, data, content_type, timeout),
            name=name,
            target=redact_url(public_url),
            attempts=self._settings.upload_max_attempts,
            sleep=self._sleep,
        )
        return public_url


class PresignedListStore:
    """One presigned PUT URL per output, used in the order `put` is called."""

    def __init__(
        self,
        targets: Sequence[OutputTarget],
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        for index, target in enumerate(targets):
            try:
                check_url(target.put_url, settings, http_only=True)
            except JobError as exc:
                raise _target_error(f"outputs.{index}.put_url", exc) from None
        self.targets = list(targets)
        self.settings = settings
        self.http = http
        self.sleep = sleep
        self._used = 0

    async def put(self, name: str, data: bytes, content_type: str) -> str:
        _check_name(name)
        index = self._used  # claimed before any await so concurrent puts keep call order
        self._used += 1
        if index >= len(self.targets):
            raise JobError(
                ErrorCode.OUTPUT_UPLOAD_FAILED,
                f"the job produced more outputs than the {len(self.targets)} presigned "
                f"target(s) in outputs; no target for {name}",
            )
        target = self.targets[index]
        timeout = self.settings.upload_timeout_s
        await _with_retries(
            lambda: _http_put(self.http, target.put_url, data, content_type, timeout),
            name=name,
            target=redact_url(target.put_url),
            attempts=self.settings.upload_max_attempts,
            sleep=self.sleep,
        )
        return target.url


def _as_folder(path: str) -> str:
    """A prefix names a folder: `jobs/123` means `jobs/123/`, never `jobs/123out_00.png`."""
    return path if not path or path.endswith("/") else path + "/"


def cached_s3_client_factory(
    settings: Settings, *, max_attempts: int, read_timeout: float
) -> S3ClientFactory:
    """A factory that builds its boto3 client once and then reuses it.

    boto3 clients are thread-safe and cost ~0.1 s to build, so a worker keeps one per use
    (built lazily: a worker that never sees s3:// never builds it).
    """
    return functools.cache(
        functools.partial(
            make_s3_client,
            settings,
            max_attempts=max_attempts,
            connect_timeout=settings.fetch_connect_timeout_s,
            read_timeout=read_timeout,
        )
    )


def output_s3_client_factory(settings: Settings) -> S3ClientFactory:
    # Our own retry loop owns the attempts.
    return cached_s3_client_factory(
        settings, max_attempts=1, read_timeout=settings.upload_timeout_s
    )


def make_store(
    payload: JobPayload,
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    s3_client_factory: S3ClientFactory | None = None,
    sleep: Sleep = asyncio.sleep,
) -> OutputStore:
    """Pick the provider for a payload: `outputs` when given, else `output_prefix`.

    Call it before processing so a bad target fails fast with INVALID_PAYLOAD naming the field.
    `http` should come from url_guard.make_http_client so uploads obey the address policy.
    """
    if payload.outputs is not None:
        return PresignedListStore(payload.outputs, settings, http, sleep=sleep)
    prefix = payload.output_prefix
    if prefix is None:
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            "output_prefix: give output_prefix or outputs",
            {"field": "output_prefix"},
        )
    if prefix[:5].lower() == "s3://":
        try:
            return S3Store.from_url(prefix, settings, client_factory=s3_client_factory, sleep=sleep)
        except ValueError as exc:
            raise JobError(
                ErrorCode.INVALID_PAYLOAD, f"output_prefix: {exc}", {"field": "output_prefix"}
            ) from None
    try:
        return PrefixPutStore(prefix, settings, http, sleep=sleep)
    except JobError as exc:
        raise _target_error("output_prefix", exc) from None
