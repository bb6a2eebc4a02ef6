"""A child process for tests whose waits catch hangs, not slowness.

Its output is read as it comes, so a wait can tell a process that is slow (still printing)
from one that hangs (silent), and a failure shows what it printed last. No wait here has a
deadline that a slow but working machine could miss: the caps are far above any run.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# A process that prints nothing for this long is stuck, however loaded the machine.
SILENCE_S = 300.0
# Caps that only catch a hang that keeps printing (a loop): far above any real run.
CAP_S = 1800.0
STOP_S = 300.0  # from a signal to the exit; the demo's clean-up is bounded far below this


class Watched:
    def __init__(self, argv: list[str], *, cwd: Path, what: str) -> None:
        self.what = what
        self.lines: list[str] = []
        self.last_output = time.monotonic()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, name=f"read {what}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.last_output = time.monotonic()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def tail(self, lines: int = 40) -> str:
        return "".join(self.lines[-lines:])

    def wait_for(self, predicate: Callable[[], bool], goal: str, *, cap_s: float = CAP_S) -> None:
        """Wait until `predicate()`; fail (saying what hung) if the process exits first, is
        silent for SILENCE_S, or runs past cap_s."""
        started = time.monotonic()
        while not predicate():
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"{self.what} exited with {code} before {goal}:\n{self.tail()}")
            now = time.monotonic()
            if now - self.last_output > SILENCE_S:
                pytest.fail(
                    f"hung: {self.what} printed nothing for {SILENCE_S:g} s while waiting for "
                    f"{goal}; last output:\n{self.tail()}"
                )
            if now - started > cap_s:
                pytest.fail(f"hung: no {goal} after {cap_s:g} s; last output:\n{self.tail()}")
            time.sleep(0.1)

    def wait_exit(self, goal: str, *, cap_s: float = CAP_S) -> int:
        """The exit code, once the process has exited and all its output is read."""
        self.wait_for(lambda: self.proc.poll() is not None, goal, cap_s=cap_s)
        self._reader.join(STOP_S)
        assert not self._reader.is_alive(), f"{self.what} exited, but its output stayed open"
        return self.proc.returncode

    def stop(self) -> None:
        """SIGTERM first, so that a process that overran still stops its own children."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
