"""The full loop with the REAL worker, for the e2e tests and `scripts/loadtest.py --stack
real-worker`: every part runs as it would in production, only the GPU side is a test double.

    moto S3 server (in this process, ThreadedMotoServer)
    ComfyUI test double (a process: `python -m tests.fakes.comfy_double`, our node pack, tiny models)
    the worker (a process: `python -m handler --rp_serve_api`, attached to the double)
    the control plane (api_stub.testing.stack: API, dispatchers, reconciler) with STORAGE=s3

Plus two small loopback proxies that let tests observe and script the wires honestly:
RunpodProxy sits between the control plane and the worker's Runpod API (scripted 429s, held
/run calls, a gate on /status), CallbackTap sits between the worker and the webhook receiver
(records the worker's signed callbacks, can lose them).

runpod's local API (`--rp_serve_api`) only stores a job on POST /run and runs it inside the
first POST /status/{id}, so the control plane polls /status at once (LOCAL_API_SETTINGS); the
worker's callback lands while that call is open, and /status then answers with the same result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api_stub.auth import NewUser, create_user
from api_stub.settings import ApiSettings
from api_stub.testing.server import LoopbackServer
from handler.settings import REPO_ROOT, Settings
from tests.fakes.comfy_double import free_port
from tests.fakes.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
PG_DSN_ENV = "SIMPLYPNG_TEST_PG_DSN"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NODE_PACK = REPO_ROOT / "comfy_nodes" / "simplypng"
DEFAULT_TYPES = ("jpeg_to_png", "bg_remove")
# Types whose workflows need no model but BiRefNet (its stand-in builds in milliseconds).
_BIREFNET_ONLY = frozenset({"jpeg_to_png", "bg_remove", "cutout_subject", "white_bg_ecomm"})

# Control-plane settings for runpod's local API (see the module docstring).
LOCAL_API_SETTINGS: dict[str, Any] = {
    "runpod_status_method": "POST",
    "runpod_status_timeout_s": 600,
    "reconcile_after_s": 0,
    "reconcile_every_s": 3600,  # a second /status would find the job gone
}

# Waits here only catch hangs: far above any run, however loaded the machine.
HANG_S = 600.0


class StartError(RuntimeError):
    """A process of the stack did not come up; the message carries its log's tail."""


# --- processes ----------------------------------------------------------------------------


@dataclass
class Process:
    """A child process whose output goes to a log file (a pipe could fill and stall it)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = HANG_S) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def spawn(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path = REPO_ROOT,
) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Process(name, popen, log_path)


def wait_ready(process: Process, probe: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if not process.alive():
            raise StartError(f"{process.name} exited early:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            process.stop()
            raise StartError(f"{process.name} not ready in {timeout_s}s:\n{process.log_tail()}")
        time.sleep(0.2)


def _answers(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return probe


def clean_env(*settings_models: type[Any]) -> dict[str, str]:
    """os.environ without the variables these settings read (nor RUNPOD_*), so a developer's
    shell cannot change what a test starts."""
    names = {name.upper() for model in settings_models for name in model.model_fields}
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("RUNPOD_")}


# --- the worker side: models, the ComfyUI double, the worker ------------------------------


def build_models(models_dir: Path, types: Sequence[str]) -> Path:
    """Tiny models for `types` under models_dir; returns the models.lock path."""
    from tests.fakes.real_models import install_u2netp
    from tests.fakes.tiny_models import birefnet_lock_entries, build_birefnet_standin, write_lock
    from tests.fakes.worker_stack import BIREFNET_DIR, build_tiny_models

    if set(types) - _BIREFNET_ONLY:
        return build_tiny_models(models_dir)
    build_birefnet_standin(models_dir / BIREFNET_DIR)
    entries = birefnet_lock_entries(models_dir, BIREFNET_DIR)
    u2netp = install_u2netp(models_dir)  # the real one, when bootstrap fetched it
    return write_lock(models_dir / "models.lock", [*entries, *([u2netp] if u2netp else [])])


def served_segmenters(lock: Path) -> str:
    """SEGMENTERS for a worker on `lock`: those whose model (per the bindings) the lock lists."""
    from handler.workflows import ModelChoice, load_binding

    binding = load_binding(REPO_ROOT / "workflows" / "bg_remove.binding.json")
    [choice] = [r for r in binding.model_refs() if isinstance(r, ModelChoice)]
    listed = {entry["model"] for entry in json.loads(lock.read_text())["models"]}
    return ",".join(name for name, model in choice.choices.items() if model in listed)


@dataclass
class DoubleProcess:
    process: Process
    url: str
    input_dir: Path
    output_dir: Path

    def set_faults(self, **faults: Any) -> None:
        """Double-only fault injection (see tests.fakes.comfy_double.Faults)."""
        httpx.post(f"{self.url}/double/fault", json=faults, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        self.set_faults()


def start_double(workdir: Path, *, models_dir: Path, lock: Path) -> DoubleProcess:
    port = free_port()
    dirs = {name: workdir / name for name in ("input", "output", "temp")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    process = spawn(
        "ComfyUI double",
        [
            "-m",
            "tests.fakes.comfy_double",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            str(workdir),
            "--input-directory",
            str(dirs["input"]),
            "--output-directory",
            str(dirs["output"]),
            "--temp-directory",
            str(dirs["temp"]),
            "--models-directory",
            str(models_dir),
            "--node-pack",
            str(NODE_PACK),
        ],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "comfy_nodes")]),
            "SIMPLYPNG_MODELS_LOCK": str(lock),
            "PYTHONUNBUFFERED": "1",
        },
        log_path=workdir / "double.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, _answers(f"{url}/system_stats"), timeout_s=HANG_S)
    return DoubleProcess(process, url, dirs["input"], dirs["output"])


def worker_env(
    double: DoubleProcess, s3: MotoS3, *, lock: Path, types: Sequence[str]
) -> dict[str, str]:
    """Environment of `python -m handler` for this stack (see handler/settings.py)."""
    return {
        "COMFYUI_URL": double.url,
        "COMFYUI_INPUT_DIR": str(double.input_dir),
        "COMFYUI_OUTPUT_DIR": str(double.output_dir),
        "ENABLED_TYPES": ",".join(types),
        "MODELS_LOCK": str(lock),
        "SEGMENTERS": served_segmenters(lock),
        # Inputs are presigned GETs on the loopback S3 server.
        "ALLOW_HTTP_INPUTS": "true",
        "URL_ALLOWLIST": "127.0.0.0/8",
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "S3_ADDRESSING_STYLE": "path",
        # A lost callback is given up on quickly; /status still carries the result.
        "CALLBACK_MAX_ATTEMPTS": "2",
        "CALLBACK_BACKOFF_S": "0.05",
        "CALLBACK_TIMEOUT_S": "10",
        "CONCURRENCY": "4",
        "LOG_LEVEL": "INFO",
        "RUNPOD_LOG_LEVEL": "WARN",
        "UVICORN_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def start_worker(workdir: Path, env: Mapping[str, str]) -> tuple[Process, str]:
    """`python -m handler --rp_serve_api` on a free loopback port; returns it and its URL."""
    port = free_port()
    process = spawn(
        "worker",
        [
            "-m",
            "handler",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        env={**clean_env(Settings), **env},
        log_path=workdir / "worker.log",
        cwd=workdir,  # runpod looks for test_input.json in the working directory
    )
    url = f"http://127.0.0.1:{port}"
    # The API comes up only after start-up (workflow checks against the double, warm-up).
    wait_ready(process, _answers(f"{url}/docs"), timeout_s=HANG_S)
    return process, url


@dataclass
class RealWorker:
    """moto, the ComfyUI double and the real worker, all started."""

    s3: MotoS3
    double: DoubleProcess
    worker: Process
    runpod_url: str  # the worker's local Runpod API
    types: tuple[str, ...]

    def storage_settings(self, bucket: str) -> dict[str, Any]:
        """Control-plane settings for STORAGE=s3 on this moto server."""
        return {
            "storage": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.s3.endpoint_url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_addressing_style": "path",
        }

    def logs(self) -> str:
        return (
            f"--- worker log ---\n{self.worker.log_tail()}\n"
            f"--- double log ---\n{self.double.process.log_tail(2000)}"
        )


@contextlib.contextmanager
def real_worker(
    workdir: Path, *, types: Sequence[str] = DEFAULT_TYPES, s3: MotoS3 | None = None
) -> Iterator[RealWorker]:
    """Start moto (unless given), the double and the worker; stop them on exit."""
    from tests.fakes.s3_server import moto_s3_server

    with contextlib.ExitStack() as stack:
        if s3 is None:
            s3 = stack.enter_context(moto_s3_server())
        lock = build_models(workdir / "models", types)
        double = start_double(workdir / "comfy", models_dir=workdir / "models", lock=lock)
        stack.callback(double.process.stop)
        env = worker_env(double, s3, lock=lock, types=types)
        worker, url = start_worker(workdir / "worker", env)
        stack.callback(worker.stop)
        yield RealWorker(s3, double, worker, url, tuple(types))


# --- wires: a Runpod proxy and a callback tap ------------------------------------------------


@dataclass
class RunCall:
    job_id: str | None  # the control plane's job id inside the payload
    status_code: int
    runpod_id: str | None = None


@dataclass
class StatusCall:
    runpod_id: str
    status_code: int
    answer: Any = None


class RunpodProxy:
    """Forwards /run, /status/{id} and /cancel/{id} to a Runpod endpoint, recording them.

    Scripting: refuse the next /run or /status calls with given statuses (429 carries
    Retry-After), hold every /run open without forwarding it (a dispatcher stuck in /run), and
    a gate that holds /status calls until opened (so a test can watch a job sit in RUNNING).
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.runs: list[RunCall] = []
        self.statuses: list[StatusCall] = []
        self.held_runs = 0
        self.status_gate = threading.Event()
        self.status_gate.set()
        self._refuse_runs: list[int] = []
        self._refuse_statuses: list[int] = []
        self._retry_after = 0
        self._hold_runs = False
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = InFlight()  # /status calls past the gate, not yet recorded
        self._http = httpx.Client(timeout=httpx.Timeout(10, read=600))
        self.app = Starlette(
            routes=[
                Route("/run", self._run, methods=["POST"]),
                Route("/status/{id}", self._status, methods=["GET", "POST"]),
                Route("/cancel/{id}", self._cancel, methods=["POST"]),
            ]
        )

    def refuse_next_runs(self, *codes: int, retry_after: int = 0) -> None:
        with self._lock:
            self._refuse_runs.extend(codes)
            self._retry_after = retry_after

    def refuse_next_statuses(self, *codes: int) -> None:
        with self._lock:
            self._refuse_statuses.extend(codes)

    def hold_runs(self) -> None:
        with self._lock:
            self._hold_runs = True

    def runs_of(self, job_id: str) -> list[RunCall]:
        with self._lock:
            return [call for call in self.runs if call.job_id == job_id]

    def close(self) -> None:
        self._closed.set()
        self.status_gate.set()
        self._http.close()

    def _refusal(self, queue: list[int]) -> Response | None:
        with self._lock:
            code = queue.pop(0) if queue else None
        if code is None:
            return None
        headers = {"Retry-After": str(self._retry_after)} if code == 429 else {}
        return JSONResponse({"error": "refused by the test proxy"}, code, headers=headers)

    async def _run(self, request: Request) -> Response:
        body = await request.body()
        try:
            job_id = json.loads(body)["input"].get("job_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            job_id = None
        refused = self._refusal(self._refuse_runs)
        if refused is not None:
            with self._lock:
                self.runs.append(RunCall(job_id, refused.status_code))
            return refused
        if self._hold_runs:
            with self._lock:
                self.held_runs += 1
            while not self._closed.is_set():
                await asyncio.sleep(0.05)
            return JSONResponse({"error": "proxy closed"}, 503)
        status, answer = await run_in_threadpool(self._forward, request, "/run", body)
        runpod_id = answer.get("id") if isinstance(answer, dict) else None
        with self._lock:
            self.runs.append(RunCall(job_id, status, runpod_id))
        return JSONResponse(answer, status)

    async def _status(self, request: Request) -> Response:
        runpod_id = request.path_params["id"]
        refused = self._refusal(self._refuse_statuses)
        if refused is not None:
            with self._lock:
                self.statuses.append(StatusCall(runpod_id, refused.status_code))
            return refused
        while not self.status_gate.is_set():
            await asyncio.sleep(0.02)
        path = f"/status/{quote(runpod_id)}"
        with self.in_flight.track():
            status, answer = await run_in_threadpool(self._forward, request, path, None)
            with self._lock:
                self.statuses.append(StatusCall(runpod_id, status, answer))
        return JSONResponse(answer, status)

    async def _cancel(self, request: Request) -> Response:
        path = f"/cancel/{quote(request.path_params['id'])}"
        status, answer = await run_in_threadpool(self._forward, request, path, None)
        return JSONResponse(answer, status)

    def _forward(self, request: Request, path: str, body: bytes | None) -> tuple[int, Any]:
        headers = {"content-type": "application/json"}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        try:
            response = self._http.request(
                request.method, self.upstream + path, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            return 502, {"error": f"upstream: {type(exc).__name__}"}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:500]}


class InFlight:
    """Counts requests forwarded but not yet recorded: the control plane may already show a
    job finished while the proxy that carried its result is still writing its record."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1

    def wait_idle(self, timeout_s: float = HANG_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._count == 0:
                    return
            if time.monotonic() > deadline:
                raise AssertionError("a proxied request never finished")
            time.sleep(0.01)


@dataclass
class TappedCallback:
    job_id: str | None
    body: bytes
    headers: dict[str, str]
    forwarded: bool
    status_code: int  # what the worker was answered
    answer: Any = None


_CALLBACK_HEADERS = (
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
)


class CallbackTap:
    """The worker's webhook URL: records each callback verbatim and forwards it to `upstream`
    (the control plane's receiver), or answers 503 without forwarding for jobs in `lose`."""

    def __init__(self) -> None:
        self.upstream: str | None = None
        self.lose: set[str] = set()
        self.callbacks: list[TappedCallback] = []
        self._lock = threading.Lock()
        self.in_flight = InFlight()
        self._http = httpx.Client(timeout=30)
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    def of(self, job_id: str) -> list[TappedCallback]:
        with self._lock:
            return [c for c in self.callbacks if c.job_id == job_id]

    def close(self) -> None:
        self._http.close()

    async def _hook(self, request: Request) -> Response:
        with self.in_flight.track():
            return await self._record(request)

    async def _record(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k in _CALLBACK_HEADERS}
        try:
            job_id = json.loads(body).get("job_id")
        except (ValueError, AttributeError):
            job_id = None
        if job_id in self.lose or self.upstream is None:
            tapped = TappedCallback(job_id, body, headers, False, 503)
        else:
            response = await run_in_threadpool(
                self._http.post, self.upstream, content=body, headers=headers
            )
            tapped = TappedCallback(
                job_id, body, headers, True, response.status_code, response.json()
            )
        with self._lock:
            self.callbacks.append(tapped)
        if not tapped.forwarded:
            return JSONResponse({"error": "lost by the test tap"}, 503)
        return JSONResponse(tapped.answer, tapped.status_code)


# --- the control plane ------------------------------------------------------------------------


@dataclass
class FullLoop:
    """The control plane in this process, wired to the real worker through the proxy and tap."""

    stack: Any  # api_stub.testing.stack.Stack
    proxy: RunpodProxy
    tap: CallbackTap
    worker: RealWorker
    bucket: str
    _servers: list[LoopbackServer] = field(default_factory=list)
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.stack.url)

    @property
    def master_key(self) -> str:
        return str(self.stack.settings.callback_master_key.get_secret_value())

    def user(self, credits_granted: int = 10) -> tuple[NewUser, httpx.Client]:
        """A new user with credits, and an API client authenticated as them."""
        user = create_user(
            self.stack.services.db, name="e2e", credits_granted=credits_granted, now=time.time()
        )
        headers = {"Authorization": f"Bearer {user.api_key}"}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._clients.append(client)
        return user, client

    @staticmethod
    def upload(http: httpx.Client, data: bytes, content_type: str) -> dict[str, str]:
        """Upload an input as a user does (presigned POST); returns the job's input item."""
        grant = http.post("/api/uploads", json={"content_type": content_type})
        grant.raise_for_status()
        form = grant.json()
        posted = httpx.post(
            form["url"], data=form["fields"], files={"file": ("input", data, content_type)}
        )
        posted.raise_for_status()
        return dict(form["input"])

    def wait(
        self,
        http: httpx.Client,
        job_id: str,
        *,
        until: Collection[str] = TERMINAL,
        timeout_s: float = HANG_S,
    ) -> dict[str, Any]:
        """Poll GET /api/jobs/{id} until its status is in `until`; returns the view."""
        deadline = time.monotonic() + timeout_s
        while True:
            view: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
            if view["status"] in until:
                if view["status"] in TERMINAL:
                    # The result may have landed before the proxies recorded carrying it.
                    self.tap.in_flight.wait_idle()
                    self.proxy.in_flight.wait_idle()
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {view['status']} after {timeout_s}s")
            time.sleep(0.05)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.stack.stop()
        self.proxy.close()
        self.tap.close()
        for server in self._servers:
            server.stop()


def start_full_loop(
    worker: RealWorker,
    *,
    database_url: str,
    storage_dir: Path,
    dispatchers: int = 1,
    settings: Mapping[str, Any] | None = None,
    paused: bool = False,
    storage: Literal["s3", "local"] = "s3",
) -> FullLoop:
    """API + dispatchers + reconciler on `database_url`, runpod via a RunpodProxy in front of
    the worker, callbacks via a CallbackTap. STORAGE=s3 uses a fresh bucket on moto; with
    STORAGE=local the worker PUTs its outputs to this API's signed URLs over loopback."""
    from api_stub.testing.stack import start_stack

    bucket = worker.s3.create_bucket()
    storage_settings = worker.storage_settings(bucket) if storage == "s3" else {}
    proxy = RunpodProxy(worker.runpod_url)
    tap = CallbackTap()
    servers = [LoopbackServer(proxy.app).start(), LoopbackServer(tap.app).start()]
    proxy_url, tap_url = servers[0].url, servers[1].url
    stack = start_stack(
        database_url=database_url,
        storage_dir=storage_dir,
        dispatchers=dispatchers,
        runpod_url=proxy_url,
        paused=paused,
        settings={
            **storage_settings,
            **LOCAL_API_SETTINGS,
            "webhook_url": f"{tap_url}/hook",
            "x_signature_enabled": True,  # the real worker sends both signatures
            **(settings or {}),
        },
    )
    tap.upstream = f"{stack.url}/api/webhooks/runpod"
    return FullLoop(stack, proxy, tap, worker, bucket, servers)


def settings_env(settings: ApiSettings, **overrides: Any) -> dict[str, str]:
    """The environment that makes `python -m api_stub ...` read these settings (plus
    overrides), for control-plane processes beside an in-process stack."""
    values = {**settings.model_dump(), **overrides}
    env = clean_env(ApiSettings)
    env.update({name.upper(): _env_value(v) for name, v in values.items() if v is not None})
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_env_value(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={_env_value(item)}" for key, item in value.items())
    return str(value)


# --- Postgres ---------------------------------------------------------------------------------


class PostgresUnavailable(RuntimeError):
    """The server at SIMPLYPNG_TEST_PG_DSN cannot be reached."""


def pg_dsn() -> str:
    return os.environ.get(PG_DSN_ENV, DEFAULT_PG_DSN)


@contextlib.contextmanager
def postgres_schema(dsn: str | None = None) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped on exit."""
    import psycopg

    dsn = dsn or pg_dsn()
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise PostgresUnavailable(f"Postgres unreachable at {PG_DSN_ENV}={dsn}: {reason}") from None
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in dsn else "?"
        yield f"{dsn}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
