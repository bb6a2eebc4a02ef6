"""Structured logs: one JSON object per line, with the `extra` fields and nothing internal."""

from __future__ import annotations

import json
import logging

from api_stub.logs import JsonFormatter


def test_json_lines_carry_extras() -> None:
    record = logging.LogRecord(
        "api_stub.x", logging.WARNING, __file__, 1, "job %s", ("done",), None
    )
    record.job_id = "j-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "job done" and line["level"] == "WARNING" and line["job_id"] == "j-1"
    assert "args" not in line and "pathname" not in line


def test_exceptions_are_serialised() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]
