"""Structured JSON logging. Fields come from `extra=`; secrets are never passed in."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

# LogRecord attributes that are not user-supplied `extra` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


# The job a log record belongs to. Each job runs in its own asyncio task (and threads started
# with asyncio.to_thread copy the context), so concurrent jobs never mix their ids.
_job_id: ContextVar[str | None] = ContextVar("simplypng_job_id", default=None)


def bind_job_id(job_id: str | None) -> None:
    """Stamp every later record of the current task with this job id."""
    _job_id.set(job_id)


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.levelno >= logging.ERROR:
            # Tracebacks stay in worker logs only, never in job results.
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; presigned URLs carry signatures in the query.
    # botocore logs request headers (Authorization: access key id and signature) at DEBUG.
    for name in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
