"""A fake Runpod serverless endpoint with a fake worker behind it, over real HTTP.

The endpoint speaks Runpod's shapes: POST /run -> {"id", "status"}, GET|POST /status/{id} ->
{"id", "status", "output"|"error", "delayTime", "executionTime"}, POST /cancel/{id}, with
Bearer auth and scriptable 429/5xx answers. The worker runs each job in a thread: it fetches
the inputs, PUTs a small PNG under the signed output prefix, and POSTs a JobResult callback
signed like the real worker (Standard Webhooks + X-Signature, per-job key from
auth.callback_hmac). Behaviours per control-plane job id script the failure paths.

With `local_api=True` it mimics runpod-python's `--rp_serve_api` instead: /run only stores
the job, the job runs inside the first POST /status call (which answers COMPLETED or FAILED
and forgets the job), an unknown id answers 200 FAILED "Job ID not found", and there is no
/cancel.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api_stub import signing

Behaviour = Literal[
    "succeed",  # callback SUCCEEDED
    "fail",  # callback FAILED (a node error)
    "lose_callback",  # completes, but the callback never arrives (the reconciler must recover)
    "duplicate",  # callback delivered twice with one webhook-id, then replayed with a new id
    "late_failure",  # callback SUCCEEDED, then a FAILED callback for the same job
    "hang",  # stays IN_PROGRESS until cancelled
    "runpod_fail",  # Runpod reports FAILED; no callback
    "bad_signature",  # callback signed with a wrong key
]


@dataclass
class FakeJob:
    id: str
    input: dict[str, Any]
    behaviour: str
    status: str = "IN_QUEUE"
    output: Any = None
    error: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class SentCallback:
    job_id: str
    webhook_id: str
    status: str
    http_status: int | None


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (8, 8), (200, 30, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeRunpod:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        delay_s: float | Callable[[], float] = 0.02,
        default: Behaviour = "succeed",
        fetch_inputs: bool = True,
        upload_outputs: bool = True,
        local_api: bool = False,
        worker_threads: int = 32,
    ):
        self.api_key = api_key
        self.url: str | None = None  # set by whoever serves `app`
        self.delay_s = delay_s
        self.default: str = default
        self.fetch_inputs = fetch_inputs
        self.upload_outputs = upload_outputs
        self.local_api = local_api
        self.plan: dict[str, str] = {}  # control-plane job id -> behaviour
        self.jobs: dict[str, FakeJob] = {}
        self.callbacks: list[SentCallback] = []
        self.run_calls = 0
        self.status_calls = 0
        self.cancel_calls = 0
        self.running = 0
        self.max_running = 0
        self._refusals: list[int] = []
        self._retry_after = 0
        self._hang_runs = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=worker_threads, thread_name_prefix="fake-worker"
        )
        self._http = httpx.Client(timeout=10)
        self._png = tiny_png()
        routes = [
            Route("/run", self._run, methods=["POST"]),
            Route("/status/{id}", self._status, methods=["POST"] if local_api else ["GET", "POST"]),
        ]
        if not local_api:
            routes.append(Route("/cancel/{id}", self._cancel, methods=["POST"]))
        self.app = Starlette(routes=routes)

    # --- scripting ---------------------------------------------------------------------
    def refuse_next_runs(self, *status_codes: int, retry_after: int = 0) -> None:
        """Answer the next /run calls with these HTTP statuses (429 carries Retry-After)."""
        with self._lock:
            self._refusals.extend(status_codes)
            self._retry_after = retry_after

    def hang_next_runs(self, count: int) -> None:
        """Hold the next /run calls open (not accepting the job) until release_runs()."""
        with self._lock:
            self._hang_runs += count
            self._release.clear()

    def release_runs(self) -> None:
        """Answer the held /run calls with 503 and stop holding new ones."""
        with self._lock:
            self._hang_runs = 0
        self._release.set()

    def forget(self, runpod_id: str) -> None:
        """Drop a job, as Runpod does when results expire."""
        with self._lock:
            self.jobs.pop(runpod_id, None)

    def runs_of(self, job_id: str) -> list[FakeJob]:
        with self._lock:
            return [job for job in self.jobs.values() if job.input.get("job_id") == job_id]

    def close(self) -> None:
        self._stop.set()
        self._release.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    # --- endpoint ----------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == (
            f"Bearer {self.api_key}"
        )

    async def _run(self, request: Request) -> JSONResponse:
        with self._lock:
            self.run_calls += 1
        if not self._authorised(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        with self._lock:
            refusal = self._refusals.pop(0) if self._refusals else None
            hang = self._hang_runs > 0
            if hang:
                self._hang_runs -= 1
        if refusal is not None:
            headers = {"Retry-After": str(self._retry_after)} if refusal == 429 else {}
            return JSONResponse({"error": "refused"}, status_code=refusal, headers=headers)
        if hang:
            while not self._release.is_set():
                await asyncio.sleep(0.02)
            return JSONResponse({"error": "gave up"}, status_code=503)
        body = await request.json()
        job_input = body.get("input") if isinstance(body, dict) else None
        if not isinstance(job_input, dict):
            return JSONResponse({"error": "input is required"}, status_code=400)
        job = FakeJob(
            id=f"fake-{uuid.uuid4()}",
            input=job_input,
            behaviour=self.plan.get(str(job_input.get("job_id")), self.default),
        )
        with self._lock:
            self.jobs[job.id] = job
        if self.local_api:
            return JSONResponse({"id": job.id, "status": "IN_PROGRESS"})
        self._pool.submit(self._execute, job)
        return JSONResponse({"id": job.id, "status": "IN_QUEUE"})

    async def _status(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        with self._lock:
            self.status_calls += 1
            job = self.jobs.get(request.path_params["id"])
        if self.local_api:
            return await self._local_status(request.path_params["id"], job)
        if job is None:
            return JSONResponse({"error": "job not found"}, status_code=404)
        answer: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "delayTime": 5,
            "executionTime": 20,
        }
        if job.output is not None:
            answer["output"] = job.output
        if job.error is not None:
            answer["error"] = job.error
        return JSONResponse(answer)

    async def _local_status(self, runpod_id: str, job: FakeJob | None) -> JSONResponse:
        if job is None:
            return JSONResponse({"id": runpod_id, "status": "FAILED", "error": "Job ID not found"})
        await asyncio.get_running_loop().run_in_executor(self._pool, self._execute, job)
        self.forget(runpod_id)
        if job.status == "COMPLETED":
            return JSONResponse({"id": runpod_id, "status": "COMPLETED", "output": job.output})
        return JSONResponse({"id": runpod_id, "status": "FAILED", "error": job.error or "failed"})

    async def _cancel(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        with self._lock:
            self.cancel_calls += 1
            job = self.jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"error": "job not found"}, status_code=404)
        job.cancelled.set()
        if job.status in ("IN_QUEUE", "IN_PROGRESS"):
            job.status = "CANCELLED"
        return JSONResponse({"id": job.id, "status": job.status})

    # --- worker ------------------------------------------------------------------------
    def _execute(self, job: FakeJob) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        result = None
        try:
            job.status = "IN_PROGRESS"
            delay = self.delay_s() if callable(self.delay_s) else self.delay_s
            if job.cancelled.wait(delay) or self._stop.is_set():
                return
            if job.behaviour == "hang":
                while not (job.cancelled.wait(0.05) or self._stop.is_set()):
                    pass
                return
            if job.behaviour == "runpod_fail":
                job.error = "handler crashed"
                job.status = "FAILED"
                return
            result = self._process(job)
            job.output = result
            job.status = "COMPLETED"
        finally:
            # `running` counts work before the callback: once the callback lands, the control
            # plane may start another job, so the tail of a delivery must not count.
            with self._lock:
                self.running -= 1
        self._deliver(job, result)

    def _process(self, job: FakeJob) -> dict[str, Any]:
        payload = job.input
        started = time.monotonic()
        metrics: dict[str, Any] = {
            "timings": {},
            "gpu_seconds": 0.25,
            "comfyui_version": "0.3.64",
            "worker_version": "fake-1",
            "models": [{"name": "fake-model", "version": "1"}],
        }
        failure = self._fetch_inputs(payload)
        if failure is None and job.behaviour == "fail":
            failure = ("NODE_ERROR", "node 7 raised", {"node_id": "7", "node_type": "Fake"})
        outputs: list[dict[str, Any]] = []
        if failure is None:
            try:
                outputs = [self._upload(payload)]
            except httpx.HTTPError as exc:
                failure = ("OUTPUT_UPLOAD_FAILED", f"upload failed: {type(exc).__name__}", None)
        metrics["timings"]["execute"] = round(time.monotonic() - started, 4)
        if failure is not None:
            code, message, details = failure
            return {
                "job_id": payload.get("job_id"),
                "status": "FAILED",
                "outputs": [],
                "error": message,
                "error_code": code,
                "error_details": details,
                "metrics": metrics,
            }
        return {
            "job_id": payload.get("job_id"),
            "status": "SUCCEEDED",
            "outputs": outputs,
            "metrics": metrics,
        }

    def _fetch_inputs(self, payload: dict[str, Any]) -> tuple[str, str, Any] | None:
        if not self.fetch_inputs:
            return None
        for item in payload.get("inputs", []):
            try:
                response = self._http.get(item["url"])
            except httpx.HTTPError as exc:
                return ("INPUT_FETCH_FAILED", f"input fetch failed: {type(exc).__name__}", None)
            if response.status_code != 200:
                return ("INPUT_FETCH_FAILED", f"input fetch: HTTP {response.status_code}", None)
        return None

    def _upload(self, payload: dict[str, Any]) -> dict[str, Any]:
        prefix = str(payload.get("output_prefix", ""))
        name = "out-0.png"
        if prefix.startswith(("http://", "https://")):
            parts = urlsplit(prefix)
            put_url = urlunsplit(parts._replace(path=parts.path + name))
            if self.upload_outputs:
                self._http.put(
                    put_url, content=self._png, headers={"Content-Type": "image/png"}
                ).raise_for_status()
            url = urlunsplit(parts._replace(path=parts.path + name, query=""))
        else:
            url = prefix + name  # s3://...: the real worker writes with its own credentials
        return {
            "url": url,
            "width": 8,
            "height": 8,
            "bytes": len(self._png),
            "sha256": hashlib.sha256(self._png).hexdigest(),
            "format": "png",
        }

    def _deliver(self, job: FakeJob, result: dict[str, Any]) -> None:
        behaviour = job.behaviour
        if behaviour == "lose_callback":
            return
        key = base64.b64decode(job.input.get("auth", {}).get("callback_hmac", ""))
        if behaviour == "bad_signature":
            key = b"\x00" * 32
        body = json.dumps(result).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        self._post(job, body, key, webhook_id, result["status"])
        if behaviour == "duplicate":
            self._post(job, body, key, webhook_id, result["status"])
            self._post(job, body, key, f"msg_{uuid.uuid4().hex}", result["status"])
        if behaviour == "late_failure":
            failed = {
                **result,
                "status": "FAILED",
                "outputs": [],
                "error": "late",
                "error_code": "TIMEOUT",
            }
            self._post(job, json.dumps(failed).encode(), key, f"msg_{uuid.uuid4().hex}", "FAILED")

    def _post(self, job: FakeJob, body: bytes, key: bytes, webhook_id: str, status: str) -> None:
        url = job.input.get("webhook_url")
        if not url:
            return
        http_status = None
        for attempt in range(3):
            headers = sign_callback(body, key, webhook_id)
            try:
                response = self._http.post(url, content=body, headers=headers)
                http_status = response.status_code
                if response.status_code < 500:
                    break
            except httpx.HTTPError:
                http_status = None
            time.sleep(0.05 * (attempt + 1))
        with self._lock:
            self.callbacks.append(
                SentCallback(str(job.input.get("job_id")), webhook_id, status, http_status)
            )


def sign_callback(
    body: bytes, key: bytes, webhook_id: str, *, timestamp: float | None = None
) -> dict[str, str]:
    """Headers the worker sends: Standard Webhooks with the per-job key, and X-Signature."""
    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(key).sign(webhook_id, when, body.decode()),
        "X-Signature": signing.hmac_b64(key, body),
    }
