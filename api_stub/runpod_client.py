"""Runpod serverless endpoint client: /run, /status/{id}, /cancel/{id}.

429, 5xx and network errors are retried with exponential backoff and full jitter (Retry-After
is honoured when longer). /run has no idempotency key, so a retried /run after an ambiguous
failure may start the job twice; callbacks are idempotent, so that costs GPU time, not money.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


class RunpodError(Exception):
    """A Runpod call that failed for good; `retryable` says whether retrying later may help."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class RunpodJob:
    id: str
    status: str  # IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT or UNKNOWN
    output: Any = None
    error: Any = None
    delay_ms: float | None = None
    execution_ms: float | None = None


class RunpodClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        status_timeout_s: float = 30.0,
        status_method: str = "GET",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._status_timeout_s = status_timeout_s
        self._status_method = status_method
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0  # observed by metrics and tests

    def close(self) -> None:
        self._http.close()

    def run(
        self,
        job_input: dict[str, Any],
        *,
        policy: dict[str, Any] | None = None,
        before_retry: Callable[[], bool] | None = None,
    ) -> str:
        """Start a job; returns Runpod's job id.

        `before_retry` runs before each retry; returning False abandons the call (the
        dispatcher uses it to renew its lease and to stop when the job was taken away).
        """
        body: dict[str, Any] = {"input": job_input}
        if policy:
            body["policy"] = policy
        ours = job_input.get("job_id")  # labels the log lines of failed attempts
        data = self._call(
            "POST",
            "/run",
            json=body,
            before_retry=before_retry,
            log_extra={"job_id": ours if isinstance(ours, str) else None},
        )
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise RunpodError("/run answered without a job id")
        return job_id

    def status(self, runpod_job_id: str, *, job_id: str | None = None) -> RunpodJob:
        """The job's state; UNKNOWN when Runpod no longer knows the id (404).

        `job_id` (our id) only labels the log lines of failed attempts.
        """
        try:
            data = self._call(
                self._status_method,
                f"/status/{runpod_job_id}",
                timeout=self._status_timeout_s,
                log_extra={"job_id": job_id, "runpod_job_id": runpod_job_id},
            )
        except RunpodError as exc:
            if exc.status_code == 404:
                return RunpodJob(runpod_job_id, "UNKNOWN")
            raise
        if not isinstance(data, dict):
            return RunpodJob(runpod_job_id, "UNKNOWN")
        status = str(data.get("status", "UNKNOWN")).upper()
        return RunpodJob(
            id=runpod_job_id,
            status=status,
            output=data.get("output"),
            error=data.get("error"),
            delay_ms=_number(data.get("delayTime")),
            execution_ms=_number(data.get("executionTime")),
        )

    def cancel(self, runpod_job_id: str, *, job_id: str | None = None) -> bool:
        """Ask Runpod to cancel; False when the endpoint has no such job (or no /cancel)."""
        try:
            self._call(
                "POST",
                f"/cancel/{runpod_job_id}",
                log_extra={"job_id": job_id, "runpod_job_id": runpod_job_id},
            )
        except RunpodError as exc:
            if exc.status_code in (404, 405):
                return False
            raise
        return True

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        before_retry: Callable[[], bool] | None = None,
        log_extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        # A job_id of None is filled from the job id bound to the context (handler.logs).
        labels = {"path": path, **(log_extra or {})}
        last: RunpodError | None = None
        for attempt in range(self._attempts):
            if attempt:
                self.retries += 1
                self._sleep(self._delay(attempt, last))
                if before_retry is not None and not before_retry():
                    raise RunpodError(f"{method} {path}: abandoned before retry")
            try:
                response = self._http.request(
                    method,
                    path,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    **kwargs,
                )
            except httpx.TransportError as exc:
                last = RunpodError(f"{method} {path}: {type(exc).__name__}", retryable=True)
                log.warning("runpod call failed", extra={**labels, "error": type(exc).__name__})
                continue
            if response.status_code in RETRYABLE_STATUS:
                last = RunpodError(
                    f"{method} {path}: HTTP {response.status_code}",
                    status_code=response.status_code,
                    retryable=True,
                    retry_after=_retry_after(response),
                )
                log.warning("runpod call refused", extra={**labels, "status": response.status_code})
                continue
            if response.status_code >= 400:
                raise RunpodError(
                    f"{method} {path}: HTTP {response.status_code}",
                    status_code=response.status_code,
                )
            try:
                return response.json()
            except ValueError:
                raise RunpodError(f"{method} {path}: the answer is not JSON") from None
        assert last is not None
        raise last

    def _delay(self, attempt: int, last: RunpodError | None) -> float:
        ceiling = self._backoff_s * (2 ** (attempt - 1))
        delay = self._rng.uniform(0, ceiling)
        if last is not None and last.retry_after is not None:
            return max(delay, last.retry_after)
        return delay


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
