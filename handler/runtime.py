"""The worker runtime: one long-lived event loop owning ComfyUI, HTTP clients and jobs.

runpod-python runs handlers on different loops depending on the mode (serverless, --test_input,
--rp_serve_api), so our resources live on a loop of their own in a background thread and the
runpod handler hands jobs to it. Start-up (ComfyUI, workflow validation, warm-up) finishes
before the first job is accepted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

from handler.comfy.client import ComfyClient
from handler.comfy.supervisor import ComfyStartError, ComfySupervisor
from handler.errors import JobError
from handler.handover import make_handover
from handler.inputs import input_s3_client_factory
from handler.models_lock import ModelsLock
from handler.pipeline import ReportProgress, WorkerContext, run_job
from handler.progress import ProgressThrottle
from handler.settings import Settings
from handler.storage import output_s3_client_factory
from handler.url_guard import make_http_client
from handler.warmup import warm_up
from handler.workflow_check import check_registry
from handler.workflows import WorkflowConfigError, load_registry

log = logging.getLogger(__name__)
T = TypeVar("T")


class StartupError(Exception):
    """The worker must not accept jobs; the message says why."""


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="simplypng-runtime", daemon=True)
        self.supervisor: ComfySupervisor | None = None
        self.ctx: WorkerContext | None = None
        self._tasks: dict[concurrent.futures.Future[Any], asyncio.Task[Any]] = {}

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the runtime loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> WorkerContext:
        self._thread.start()
        self.ctx = self.call(self._start())
        return self.ctx

    async def _start(self) -> WorkerContext:
        settings = self.settings
        try:
            registry = load_registry(settings.workflows_dir, settings.enabled_types)
        except (WorkflowConfigError, OSError, ValueError) as exc:
            raise StartupError(f"workflow files are invalid: {exc}") from exc
        try:
            supervisor = ComfySupervisor(settings)
            self.supervisor = supervisor
            await supervisor.start()
        except ComfyStartError as exc:
            raise StartupError(f"ComfyUI did not start: {exc}") from exc
        if supervisor.input_dir is None or supervisor.output_dir is None:
            log.warning(
                "attached to ComfyUI without COMFYUI_INPUT_DIR/COMFYUI_OUTPUT_DIR: job files "
                "cannot be deleted from its folders and will accumulate there"
            )
        comfy = ComfyClient(supervisor.base_url, idle_timeout_s=settings.comfyui_idle_timeout_s)
        problems = check_registry(registry, await comfy.object_info())
        if problems:
            for problem in problems:
                log.error("workflow does not match ComfyUI", extra={"problem": problem})
            raise StartupError(
                "workflows do not match this ComfyUI's /object_info: " + "; ".join(problems)
            )
        try:
            handover = make_handover(
                settings.comfyui_handover,
                comfy,
                supervisor.input_dir,
                supervisor.output_dir,
                int(settings.comfyui_max_upload_mb * 1024 * 1024),
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        log.info("pixel hand-over to ComfyUI", extra={"handover": handover.kind})
        if settings.warmup:
            try:
                await warm_up(
                    comfy,
                    handover,
                    registry,
                    timeout_s=settings.comfyui_start_timeout_s,
                    segmenters=settings.segmenters,
                )
            except JobError as exc:
                raise StartupError(f"warm-up failed: {exc.code}: {exc.message}") from exc
            finally:
                for base in (supervisor.input_dir, supervisor.output_dir):
                    if base is not None:
                        for path in (base / "simplypng").glob("warmup-*"):
                            shutil.rmtree(path, ignore_errors=True)
        ctx = WorkerContext(
            settings=settings,
            comfy=comfy,
            registry=registry,
            http=make_http_client(settings),
            callback_http=httpx.AsyncClient(follow_redirects=False),
            models=ModelsLock.load(settings.models_lock),
            s3_inputs=input_s3_client_factory(settings),
            s3_outputs=output_s3_client_factory(settings),
            comfyui_version=await comfy.comfyui_version(),
            input_dir=supervisor.input_dir,
            output_dir=supervisor.output_dir,
            handover=handover,
        )
        return ctx

    def submit(
        self, raw: object, progress: ReportProgress | None = None
    ) -> concurrent.futures.Future[dict]:
        assert self.ctx is not None, "start() first"
        ctx = self.ctx
        done: concurrent.futures.Future[dict] = concurrent.futures.Future()

        def launch() -> None:
            task = self.loop.create_task(run_job(ctx, raw, progress))
            self._tasks[done] = task

            def finished(t: asyncio.Task[dict]) -> None:
                self._tasks.pop(done, None)
                if t.cancelled():
                    done.set_exception(concurrent.futures.CancelledError())
                elif t.exception() is not None:
                    done.set_exception(t.exception())
                else:
                    done.set_result(t.result())

            task.add_done_callback(finished)

        self.loop.call_soon_threadsafe(launch)
        return done

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel a submitted job; its future then resolves to a CANCELLED result."""

        def do_cancel() -> None:
            task = self._tasks.get(future)
            if task is not None:
                task.cancel()

        self.loop.call_soon_threadsafe(do_cancel)

    def health(self) -> dict[str, Any]:
        return self.supervisor.health() if self.supervisor else {"state": "starting"}

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self.ctx is not None:
                await self.ctx.http.aclose()
                await self.ctx.callback_http.aclose()
                await self.ctx.comfy.aclose()
            if self.supervisor is not None:
                await self.supervisor.stop()

        with contextlib.suppress(Exception):
            self.call(shutdown(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def make_handler(
    runtime: WorkerRuntime, progress_sink: Callable[[dict, dict], None] | None = None
) -> Callable[[dict], Coroutine[Any, Any, dict]]:
    """The async runpod handler: hands the job to the runtime and awaits its result."""
    first_job = {"seen": False}
    boot = runtime.settings.boot_epoch or time.time()

    async def handler(job: dict) -> dict:
        if not first_job["seen"]:
            first_job["seen"] = True
            log.info("first job accepted", extra={"cold_start_s": round(time.time() - boot, 3)})
        progress = None
        if progress_sink is not None:
            progress = ProgressThrottle(lambda data: progress_sink(job, data))
        future = runtime.submit(job.get("input"), progress)
        try:
            result = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # Runpod cancelled the job: interrupt the prompt and report CANCELLED.
            runtime.cancel(future)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            result = await asyncio.wrap_future(future)
        return for_runpod(result, comfyui_failed=runtime.health().get("state") == "failed")

    return handler


def for_runpod(result: dict, *, comfyui_failed: bool = False) -> dict:
    """The job result as runpod's SDK wants it.

    runpod pops `error` from the return value to mark the job FAILED and keeps the rest as
    output; its /status may carry only that string, so the code goes in front of it
    ("NODE_ERROR: ...") for a control plane reconciling a lost callback. When the supervisor
    gave up on ComfyUI, `refresh_worker` asks Runpod for a fresh worker.
    """
    out = dict(result)
    if out.get("status") == "FAILED":
        out["error"] = f"{out.get('error_code')}: {out.get('error')}"
    if comfyui_failed:
        out["refresh_worker"] = True
    return out
