"""Worker entry: GPU check, ComfyUI, workflow validation, warm-up, then runpod's loop."""

from __future__ import annotations

import logging
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
        report = check_gpu()
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
        import runpod  # imported late: it reads argv/env at import time

        runpod.serverless.start(
            {
                "handler": make_handler(runtime, runpod.serverless.progress_update),
                "concurrency_modifier": lambda _current: settings.concurrency,
            }
        )
        return 0
    finally:
        runtime.stop()


if __name__ == "__main__":
    sys.exit(main())
