"""tests/fakes/watched.py: the process-level tests' waits fail on a hang, saying what hung,
and on an early exit; never on a deadline a slow machine could miss.

The children here are silent for ever or exit at once, so no outcome depends on speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fakes import watched
from tests.fakes.watched import Watched

SILENT = "import time; print('loading custom nodes...', flush=True); time.sleep(600)"


def test_a_silent_process_is_reported_as_hung_with_its_last_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = Watched([sys.executable, "-c", SILENT], cwd=tmp_path, what="the fake demo")
    try:
        child.wait_for(lambda: bool(child.lines), "its first line")  # however slow it starts
        monkeypatch.setattr(watched, "SILENCE_S", 0.5)  # then it is silent for 600 s
        with pytest.raises(pytest.fail.Exception) as info:
            child.wait_for(lambda: False, "the API's start")
    finally:
        child.stop()
    message = str(info.value)
    assert message.startswith("hung: the fake demo printed nothing for 0.5 s while waiting")
    assert "for the API's start" in message and "loading custom nodes..." in message
    assert child.proc.returncode is not None  # stop() ended it


def test_an_early_exit_is_reported_with_its_code_and_output(tmp_path: Path) -> None:
    code = "print('demo failed: worker was not ready'); raise SystemExit(2)"
    child = Watched([sys.executable, "-c", code], cwd=tmp_path, what="the fake demo")
    with pytest.raises(pytest.fail.Exception) as info:
        child.wait_for(lambda: False, "the API's start")
    assert str(info.value).startswith("the fake demo exited with 2 before the API's start")
    assert "worker was not ready" in str(info.value)


def test_wait_exit_returns_the_code_and_the_whole_output(tmp_path: Path) -> None:
    code = "import sys; print('a'); print('b'); sys.exit(130)"
    child = Watched([sys.executable, "-c", code], cwd=tmp_path, what="the fake demo")
    assert child.wait_exit("its end") == 130
    assert child.output == "a\nb\n"
