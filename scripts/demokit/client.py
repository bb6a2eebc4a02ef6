"""The public API as a user meets it: presigned upload, job creation, polling, download."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("demo")

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}


class ApiCallFailed(RuntimeError):
    """The API refused a call; the message holds its error code and message."""


@dataclass
class Tracked:
    """One submitted job, as last seen."""

    index: int
    job_type: str
    job_id: str
    view: dict[str, Any]
    submitted_at: float

    @property
    def status(self) -> str:
        return str(self.view.get("status", "?"))


class DemoClient:
    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30.0):
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            trust_env=False,  # everything is on loopback: never through a proxy
        )
        # Presigned URLs carry their own authorisation: no API key on them.
        self._plain = httpx.Client(timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    def upload(self, path: Path, content_type: str) -> dict[str, str]:
        """Upload a file through a presigned form; returns the job input that names it."""
        data = path.read_bytes()
        grant = _json(
            self._http.post(
                "/api/uploads", json={"content_type": content_type, "content_length": len(data)}
            )
        )
        response = self._plain.post(
            grant["url"], data=grant["fields"], files={"file": (path.name, data, content_type)}
        )
        if response.status_code not in (200, 201, 204):
            raise ApiCallFailed(f"upload of {path.name} refused: {_error(response)}")
        return dict(grant["input"])

    def create_job(
        self, job_type: str, params: dict[str, Any], inputs: list[dict[str, str]], timeout_s: int
    ) -> dict[str, Any]:
        body = {"type": job_type, "params": params, "inputs": inputs, "timeout_s": timeout_s}
        return _json(self._http.post("/api/jobs", json=body))

    def job(self, job_id: str) -> dict[str, Any]:
        return _json(self._http.get(f"/api/jobs/{job_id}"))

    def download(self, url: str, dest: Path) -> Path:
        response = self._plain.get(url)
        if response.status_code != 200:
            raise ApiCallFailed(f"download of {dest.name} failed: {_error(response)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(response.content)
        return dest


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise ApiCallFailed(
            f"{response.request.method} {response.request.url.path}: {_error(response)}"
        )
    return response.json()


def _error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} {response.text[:200]}"


def track(
    client: DemoClient,
    jobs: list[Tracked],
    *,
    deadline_s: float,
    poll_s: float = 0.5,
    heartbeat_s: float = 5.0,
    still_ok: Callable[[], None] = lambda: None,
) -> list[Tracked]:
    """Poll every job until all are finished, logging each status change and a heartbeat.

    `still_ok` runs each round and may raise (e.g. when a service process has died).
    """
    total = len(jobs)
    started = time.monotonic()
    next_beat = started + heartbeat_s
    while True:
        for item in jobs:
            if item.status in TERMINAL:
                continue
            before = item.status
            item.view = client.job(item.job_id)
            if item.status != before:
                log.info(
                    "    [%d/%d] %-15s %-11s %5.1fs",
                    item.index,
                    total,
                    item.job_type,
                    item.status,
                    time.monotonic() - item.submitted_at,
                )
        pending = [item for item in jobs if item.status not in TERMINAL]
        if not pending:
            return jobs
        now = time.monotonic()
        if now - started > deadline_s:
            names = ", ".join(f"{i.job_type} ({i.status})" for i in pending)
            raise TimeoutError(f"jobs still unfinished after {deadline_s:g} s: {names}")
        if now >= next_beat:
            counts: dict[str, int] = {}
            for item in pending:
                counts[item.status] = counts.get(item.status, 0) + 1
            summary = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
            log.info("    ... %s (%.0f s)", summary, now - started)
            next_beat = now + heartbeat_s
        still_ok()
        time.sleep(poll_s)


def output_name(job_type: str, fmt: str, index: int, count: int) -> str:
    suffix = "" if count == 1 else f"-{index + 1}"
    return f"{job_type}{suffix}.{EXTENSIONS.get(fmt, fmt)}"
