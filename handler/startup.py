"""Worker entry: GPU check, ComfyUI, workflow validation, warm-up, then runpod's loop."""

from __future__ import annotations

import logging
import os
import sys
import time

from pydantic import ValidationError

from handler import logs
from handler.gpu_check import check_gpu
from handler.runtime import StartupError, WorkerRuntime, make_handler
from handler.settings import Settings

log = logging.getLogger("handler.startup")

EXIT_CONFIG = 2
EXIT_NO_GPU = 3
EXIT_STARTUP = 4


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        logs.configure()
        log.error("invalid configuration", extra={"errors": exc.errors(include_url=False)})
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    started = time.time()
    if settings.require_gpu:
        report = check_gpu(min_driver=settings.min_driver_version)
        if not report.ok:
            log.error("GPU check failed", extra={"reason": report.message})
            return EXIT_NO_GPU
        log.info("GPU check passed", extra={"gpus": report.message})
    runtime = WorkerRuntime(settings)
    try:
        try:
            runtime.start()
        except StartupError as exc:
            log.error("worker refused to start", extra={"reason": str(exc)})
            return EXIT_STARTUP
        log.info(
            "worker ready",
            extra={
                "ready_s": round(time.time() - (settings.boot_epoch or started), 3),
                "types": settings.enabled_types,
                "comfyui": runtime.health(),
            },
        )
        # runpod reads its log level from the environment when imported; at its default
        # (DEBUG) it logs every job input, which holds callback keys and signed URLs.
        os.environ["RUNPOD_LOG_LEVEL"] = settings.runpod_log_level
        import runpod

        # Off Runpod (--test_input, --rp_serve_api) there is no job-stream URL to post to.
        on_runpod = settings.runpod_webhook_post_output is not None
        runpod.serverless.start(
            {
                "handler": make_handler(
                    runtime, runpod.serverless.progress_update if on_runpod else None
                ),
                "concurrency_modifier": lambda _current: settings.concurrency,
            }
        )
        return 0
    finally:
        runtime.stop()


if __name__ == "__main__":
    sys.exit(main())
