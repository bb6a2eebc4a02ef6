"""The demo's child processes: each in its own process group, logging to its own file, all
stopped together (SIGTERM to the group, SIGKILL after a grace period, then any descendant that
left the group, such as the ComfyUI the worker starts in a session of its own).

Every process started is recorded in a JSON file (pid + start time), so a test can check that
none outlives the demo.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import psutil

log = logging.getLogger("demo")

TAIL_LINES = 25
_LOG_KEYS = {"ts", "time", "level", "logger", "msg"}  # the JSON log fields not worth showing


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the message names it."""


class ChildFailed(RuntimeError):
    """A child exited or missed its deadline; the message carries the tail of its log."""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(deque(handle, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"

    def logged(self, text: str) -> bool:
        try:
            return text in self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False

    def last_message(self, width: int = 90) -> str:
        """Its latest log line, shortened (the message of a JSON log line)."""
        lines = [line for line in self.tail(5).splitlines() if line.strip()]
        if not lines:
            return ""
        line = lines[-1].strip()
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "msg" in record:
                extra = [f"{k}={v}" for k, v in record.items() if k not in _LOG_KEYS]
                line = " ".join([str(record["msg"]), *extra])
        return line if len(line) <= width else line[: width - 1] + "…"

    def failure(self, what: str) -> ChildFailed:
        return ChildFailed(
            f"{self.name} {what}; last lines of {self.log_path}:\n{_indent(self.tail())}"
        )


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines()) or "  | (empty)"


def _identity(pid: int) -> dict[str, float | int] | None:
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return None


def still_running(record: dict[str, float | int]) -> bool:
    """Whether the process a record names is alive (same pid AND start time: pids recycle)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Children:
    """Start, watch and stop the demo's processes."""

    def __init__(self, log_dir: Path, record_path: Path, *, grace_s: float = 10.0):
        self.log_dir = log_dir
        self.record_path = record_path
        self.grace_s = grace_s
        self.children: list[Child] = []
        self._records: list[dict[str, object]] = []
        self._holding = 0
        self._pending: signal.Signals | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def install_signal_handlers(self) -> None:
        """Turn SIGINT and SIGTERM into `Interrupted`, so the caller's clean-up runs."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._holding:
            self._pending = signal.Signals(signum)
            return
        raise Interrupted(signal.Signals(signum).name)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        capture_stdout: bool = False,
    ) -> Child:
        """Start a child; its output goes to logs/<name>.log (stdout to a pipe instead with
        `capture_stdout`, for output that must not be written to disk, such as an API key)."""
        log_path = self.log_dir / f"{name}.log"
        # Ctrl-C between the fork and the bookkeeping would leave an untracked child: defer
        # the interrupt until it is recorded. (Not pthread_sigmask: children inherit the mask.)
        self._holding += 1
        try:
            with open(log_path, "wb") as out:
                popen = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture_stdout else out,
                    stderr=out if capture_stdout else subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop_all reaches its children
                )
            child = Child(name, popen, log_path)
            self.children.append(child)
            self._record(name, popen.pid)
        finally:
            self._holding -= 1
            if not self._holding and self._pending is not None:
                pending, self._pending = self._pending, None
                raise Interrupted(pending.name)
        return child

    def run_captured(
        self, name: str, argv: list[str], *, env: dict[str, str], timeout_s: float = 120.0
    ) -> str:
        """Run a one-shot command; returns its stdout (never written to the log)."""
        child = self.start(name, argv, env=env, capture_stdout=True)
        try:
            out, _ = child.popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise child.failure(f"did not finish within {timeout_s:g} s") from None
        if child.popen.returncode != 0:
            raise child.failure(f"exited with code {child.popen.returncode}")
        return out.decode("utf-8", errors="replace")

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        timeout_s: float = 120.0,
        echo: bool = False,
    ) -> str:
        """Run a one-shot command to completion; returns its output, raises on failure.

        With `echo`, its output lines are logged as they come (downloads, installs)."""
        child = self.start(name, argv, env=env, cwd=cwd)
        deadline = time.monotonic() + timeout_s
        offset = 0
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            if echo:
                offset = _echo_new_lines(child.log_path, offset)
        if child.alive():
            raise child.failure(f"did not finish within {timeout_s:g} s")
        if echo:
            _echo_new_lines(child.log_path, offset, final=True)
        if child.popen.returncode != 0:
            raise child.failure(f"exited with code {child.popen.returncode}")
        return child.log_path.read_text(encoding="utf-8", errors="replace")

    def _record(self, name: str, pid: int) -> None:
        identity = _identity(pid)
        if identity is None:
            return
        self._records.append({"name": name, **identity})
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._records, indent=2), encoding="utf-8")
        os.replace(tmp, self.record_path)

    def stop_all(self) -> None:
        """Stop every child, newest first; idempotent. Further Ctrl-Cs are ignored meanwhile
        (it is bounded by the grace periods)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        running = [c for c in reversed(self.children) if c.alive()]
        if not running:
            return
        log.info(
            "==> stopping %d process(es): %s", len(running), ", ".join(c.name for c in running)
        )
        # Remember descendants now: a grandchild in a session of its own (ComfyUI under the
        # worker) is not in the group, and is reparented once its parent exits.
        strays: dict[int, psutil.Process] = {}
        for child in running:
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(child.pid).children(recursive=True):
                    strays[proc.pid] = proc
                    self._record(f"{child.name}/{proc.name()}", proc.pid)
        for child in running:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in running:
            if child.alive():
                log.warning("%s ignored SIGTERM for %g s: killing it", child.name, self.grace_s)
            _signal_group(child.pid, signal.SIGKILL)  # also reaps group members left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=5)
        leftover = [p for p in strays.values() if p.is_running()]
        for proc in leftover:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(leftover, timeout=self.grace_s)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _echo_new_lines(path: Path, offset: int, *, final: bool = False) -> int:
    """Log the complete lines written to `path` since `offset`; returns the new offset."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except OSError:
        return offset
    end = len(chunk) if final else chunk.rfind(b"\n") + 1
    for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
        if line.strip():
            log.info("    | %s", line.rstrip())
    return offset + end


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_on_free_port(
    start: Callable[[int], Child], wait: Callable[[Child, int], None], *, attempts: int = 3
) -> tuple[Child, int]:
    """Start a server on a free port and wait until it is ready; start it over on another
    port when some other process took the port first (it is picked before the server binds,
    and a worker binds only after its warm-up)."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        child = start(port)
        try:
            wait(child, port)
        except ChildFailed:
            if attempt == attempts or child.alive() or not _lost_port(child):
                raise
            log.warning("    %s: port %d was taken meanwhile, trying another", child.name, port)
            continue
        return child, port
    raise AssertionError("unreachable")


def _lost_port(child: Child) -> bool:
    tail = child.tail().lower()
    return "address already in use" in tail or "errno 98" in tail


def wait_http(
    child: Child,
    url: str,
    *,
    deadline_s: float,
    what: str,
    log_marker: str,
    every_s: float = 5.0,
) -> None:
    """Wait until the child has logged `log_marker` (the line a server logs once it holds its
    port, so that another process on that port is never mistaken for it) and `url` answers
    200. Fails early if the child exits."""
    started = time.monotonic()
    next_note = started + every_s
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while True:
            if not child.alive():
                raise child.failure(f"exited with code {child.popen.returncode} while {what}")
            if child.logged(log_marker):
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
            now = time.monotonic()
            if now - started > deadline_s:
                raise child.failure(f"was not ready after {deadline_s:g} s ({what})")
            if now >= next_note:
                latest = child.last_message()
                log.info(
                    "    ... %s (%.0f s)%s", what, now - started, f": {latest}" if latest else ""
                )
                next_note = now + every_s
            time.sleep(0.2)
