"""The local ComfyUI server: attach to a running one, or start main.py as a child and keep it up.

Child mode starts `COMFYUI_PYTHON main.py --listen 127.0.0.1 --port P ...` in COMFYUI_DIR in
its own process group, streams its output to our log, waits until GET /system_stats answers,
restarts it (bounded, with backoff) when it dies, and stops the whole group on shutdown.

It adopts only its own child: a port that another process already holds is an error naming
the port and the holder (no silent move to another port: the port is configuration, and a
stranger there is usually a leftover ComfyUI sharing the GPU), and the server that answers
must be the child (its process group holds the listening socket; without /proc, its argv).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from pathlib import Path
from typing import Any, Literal

import httpx

from handler.comfy import ports
from handler.settings import Settings

log = logging.getLogger(__name__)
child_log = logging.getLogger("handler.comfy.comfyui")

State = Literal["starting", "ready", "restarting", "failed", "attached", "stopped"]
TAIL_LINES = 20
READER_DRAIN_S = 2.0
LOOPBACK = "127.0.0.1"


class ComfyStartError(RuntimeError):
    """ComfyUI did not become ready (exited early, missed its deadline, or is unreachable)."""


class ComfySupervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        max_restarts: int = 5,
        restart_backoff_s: float = 1.0,
        stop_grace_s: float = 10.0,
        poll_interval_s: float = 0.25,
    ):
        if settings.comfyui_url is None and settings.comfyui_dir is None:
            raise ComfyStartError("set COMFYUI_URL (attach) or COMFYUI_DIR (start ComfyUI)")
        self.settings = settings
        self.max_restarts = max_restarts
        self.restart_backoff_s = restart_backoff_s
        self.stop_grace_s = stop_grace_s
        self.poll_interval_s = poll_interval_s
        self.attached = settings.comfyui_url is not None
        self.state: State = "starting"
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_stop: str | None = None  # the signal that ended the last stop()

    # ---- where things are -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.settings.comfyui_url is not None:
            return self.settings.comfyui_url.rstrip("/")
        return f"http://{LOOPBACK}:{self.settings.comfyui_port}"

    def _folder(self, configured: Path | None, name: str) -> Path | None:
        if configured is not None:
            return configured
        if self.attached or self.settings.comfyui_dir is None:
            return None  # an attached server's folders are unknown unless configured
        return self.settings.comfyui_dir / name

    @property
    def input_dir(self) -> Path | None:
        return self._folder(self.settings.comfyui_input_dir, "input")

    @property
    def output_dir(self) -> Path | None:
        return self._folder(self.settings.comfyui_output_dir, "output")

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "url": self.base_url,
            "last_exit_code": self.last_exit_code,
        }

    def command(self) -> list[str]:
        """The child's command line (flags as documented for ComfyUI 0.3.64)."""
        s = self.settings
        cmd = [s.comfyui_python, "main.py", "--listen", LOOPBACK, "--port", str(s.comfyui_port)]
        cmd += ["--disable-metadata", "--disable-api-nodes"]
        if s.comfyui_input_dir is not None:
            cmd += ["--input-directory", str(s.comfyui_input_dir)]
        if s.comfyui_output_dir is not None:
            cmd += ["--output-directory", str(s.comfyui_output_dir)]
        return cmd + list(s.comfyui_extra_args)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Return once ComfyUI answers GET /system_stats; raise ComfyStartError otherwise."""
        if self.attached:
            await self._wait_ready(None)
            self.state = "attached"
            log.info("attached to ComfyUI", extra={"url": self.base_url})
            return
        try:
            await self._spawn_until_ready()
        except ComfyStartError:
            self.state = "failed"
            raise
        self.state = "ready"
        self._monitor = asyncio.create_task(self._watch(), name="comfyui-monitor")

    async def stop(self) -> None:
        """Stop the child's whole process group: SIGTERM, then SIGKILL after the grace period."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self._terminate()
        if not self.attached:
            self.state = "stopped"

    async def _spawn_until_ready(self) -> None:
        await self._spawn()
        try:
            await self._wait_ready(self._process)
        except ComfyStartError:
            log.error("ComfyUI did not start; its last output", extra={"output": list(self._tail)})
            await self._terminate()
            raise

    def _check_port_free(self) -> None:
        port = self.settings.comfyui_port
        if ports.port_is_free(LOOPBACK, port):
            return
        holders = ports.listeners(port) or set()
        who = "; ".join(ports.describe(pid) for pid in sorted(holders)) or "a process we cannot see"
        raise ComfyStartError(
            f"port {port} on {LOOPBACK} is already in use ({who}); the worker starts its own "
            f"ComfyUI there and adopts no other server: stop that process or set COMFYUI_PORT "
            f"to a free port"
        )

    async def _spawn(self) -> None:
        assert self.settings.comfyui_dir is not None
        self._check_port_free()
        cmd = self.command()
        log.info(
            "starting ComfyUI",
            extra={"command": " ".join(cmd), "cwd": str(self.settings.comfyui_dir)},
        )
        self._tail.clear()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=self.settings.comfyui_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches grandchildren
            )
        except OSError as exc:
            raise ComfyStartError(f"could not start ComfyUI: {exc}") from exc
        log.info("ComfyUI started", extra={"pid": self._process.pid})
        self._reader = asyncio.create_task(self._pump(self._process), name="comfyui-log")

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self._tail.append(line)
            child_log.info(line)  # the child's own line is the message; it has no fields

    async def _wait_ready(self, process: asyncio.subprocess.Process | None) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.comfyui_start_timeout_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            while True:
                if process is not None and process.returncode is not None:
                    self.last_exit_code = process.returncode
                    raise ComfyStartError(
                        f"ComfyUI exited with code {process.returncode} before it was ready"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"{self.base_url}/system_stats")
                    if response.status_code == 200:
                        if process is not None:
                            self._check_answered_by(process, response)
                        return
                if asyncio.get_running_loop().time() >= deadline:
                    raise ComfyStartError(
                        f"ComfyUI did not answer {self.base_url}/system_stats within "
                        f"{self.settings.comfyui_start_timeout_s:g} s"
                    )
                await asyncio.sleep(self.poll_interval_s)

    def _check_answered_by(
        self, process: asyncio.subprocess.Process, response: httpx.Response
    ) -> None:
        """Raise unless the server answering on our port is `process` (or its group)."""
        port = self.settings.comfyui_port
        holders = ports.listeners(port)
        if holders is not None:
            if any(_group_of(pid) == process.pid for pid in holders):
                return
            who = "; ".join(ports.describe(pid) for pid in sorted(holders))
            why = f"the listening socket belongs to {who or 'a process we cannot see'}"
        else:  # no /proc: the argv ComfyUI reports must be the one we gave it
            argv = _reported_argv(response)
            if argv is not None and argv[1:] == self.command()[2:]:
                return
            why = f"it reports argv {argv!r}"
        raise ComfyStartError(
            f"a server that is not the ComfyUI the worker started (pid {process.pid}) answers "
            f"on port {port}: {why}; not adopting it (stop it or set COMFYUI_PORT)"
        )

    async def _watch(self) -> None:
        """Restart the child when it dies; give up after max_restarts failed starts in a row."""
        failures = 0
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            self.last_exit_code = code
            self.state = "restarting"
            log.error(
                "ComfyUI exited; its last output",
                extra={"exit_code": code, "output": list(self._tail)},
            )
            await self._terminate()  # reap it and whatever it left running in its group
            while True:
                if failures >= self.max_restarts:
                    self.state = "failed"
                    log.error(
                        "ComfyUI restarts keep failing; giving up", extra={"failures": failures}
                    )
                    return
                await asyncio.sleep(self.restart_backoff_s * 2**failures)
                self.restarts += 1
                try:
                    await self._spawn_until_ready()
                except ComfyStartError as exc:
                    failures += 1
                    log.error("ComfyUI restart failed", extra={"error": str(exc)})
                    continue
                failures = 0
                self.state = "ready"
                break

    async def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        # SIGTERM, not SIGINT: ComfyUI installs no SIGTERM handler, so it ends at once, while
        # SIGINT is ignored whenever it was ignored at its start (any background launch).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_grace_s)
            self.last_stop = "SIGTERM"
        except TimeoutError:
            log.warning("ComfyUI ignored SIGTERM for %g s; killing it", self.stop_grace_s)
            self.last_stop = "SIGKILL"
        # Also reaches grandchildren that outlived the main process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if self._reader is not None:
            # The log pipe closes once the whole group is gone; do not hang on a straggler.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, READER_DRAIN_S)
        self._process = None


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _reported_argv(response: httpx.Response) -> list[str] | None:
    """ComfyUI's /system_stats reports its sys.argv as system.argv."""
    try:
        argv = response.json()["system"]["argv"]
    except (ValueError, KeyError, TypeError):
        return None
    return [str(part) for part in argv] if isinstance(argv, list) else None
