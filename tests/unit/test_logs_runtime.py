import asyncio
import json
import logging

from handler.logs import JobIdFilter, JsonFormatter, bind_job_id
from handler.runtime import for_runpod
from handler.timing import StageTimer


async def test_concurrent_jobs_keep_their_own_job_id_in_logs() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(JobIdFilter())
    logger = logging.getLogger("test.jobs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def job(job_id: str) -> None:
        bind_job_id(job_id)
        for _ in range(3):
            await asyncio.sleep(0)
            logger.info("step")
            await asyncio.to_thread(logger.info, "in a thread")

    try:
        await asyncio.gather(asyncio.create_task(job("a")), asyncio.create_task(job("b")))
    finally:
        logger.removeHandler(handler)
    assert sorted(r.job_id for r in records) == ["a"] * 6 + ["b"] * 6


def test_json_formatter_keeps_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"msg": "done", "levelname": "INFO", "job_id": "j1", "timings": {"upload": 0.5}}
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "done" and doc["job_id"] == "j1" and doc["timings"] == {"upload": 0.5}


def test_for_runpod_puts_the_code_in_front_of_the_error() -> None:
    failed = {"status": "FAILED", "error_code": "NODE_ERROR", "error": "boom", "outputs": []}
    assert for_runpod(failed)["error"] == "NODE_ERROR: boom"
    assert failed["error"] == "boom", "the callback body itself is not changed"
    ok = {"status": "SUCCEEDED", "error": None, "error_code": None}
    assert for_runpod(ok) == ok
    assert for_runpod(ok, comfyui_failed=True)["refresh_worker"] is True


def test_stage_timer_accumulates() -> None:
    timer = StageTimer()
    timer.add("upload", 0.25)
    timer.add("upload", 0.5)
    with timer.stage("encode"):
        pass
    assert timer.stages["upload"] == 0.75 and timer.stages["encode"] >= 0
