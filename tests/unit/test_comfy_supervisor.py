"""ComfySupervisor: attach mode, and a real child process (a fake main.py in a temp folder).

The child main.py files below stand in for ComfyUI's: most run the ComfyUI test double, others
crash or hang, so that the supervisor's process handling is tested with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from handler.comfy import ports
from handler.comfy.client import ComfyClient
from handler.comfy.supervisor import ComfyStartError, ComfySupervisor
from handler.settings import Settings
from tests.fakes.comfy_double import ComfyDouble, free_port, serve_in_thread
from tests.fakes.stranger import stranger_on

REPO = Path(__file__).resolve().parents[2]

DOUBLE_MAIN = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
with open("argv.json", "w") as out:
    json.dump(sys.argv, out)
from tests.fakes.comfy_double import main
sys.exit(main())
"""

CRASH_MAIN = """
print("Traceback: ModuleNotFoundError: No module named 'boom'", flush=True)
raise SystemExit(3)
"""

HANG_MAIN = """
import os, time
with open("main.pid", "w") as out:
    out.write(str(os.getpid()))
print("loading custom nodes...", flush=True)
time.sleep(60)
"""

# Serves once; every later start crashes (a broken install discovered on restart).
ONCE_MAIN = f"""
import os, sys
if os.path.exists("started"):
    print("cannot start again", flush=True)
    raise SystemExit(1)
open("started", "w").close()
sys.path.insert(0, {str(REPO)!r})
from tests.fakes.comfy_double import main
sys.exit(main())
"""

# Ignores SIGINT and SIGTERM and leaves a grandchild that ignores them too: only SIGKILL to the
# group works.
STUBBORN_MAIN = f"""
import signal, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tests.fakes.comfy_double import ComfyDouble, serve_in_thread
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = ("import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
child = subprocess.Popen([sys.executable, "-c", code])
Path("grandchild.pid").write_text(str(child.pid))
port = int(sys.argv[sys.argv.index("--port") + 1])
with serve_in_thread(ComfyDouble(Path.cwd()), port=port):
    while True:
        time.sleep(1)
"""


def comfy_dir(tmp_path: Path, main: str) -> Path:
    folder = tmp_path / "comfyui"
    folder.mkdir()
    (folder / "main.py").write_text(textwrap.dedent(main), encoding="utf-8")
    return folder


# Deadlines that only catch hangs: a child that starts slowly on a loaded machine is not a
# failure. Tests of a deadline use children that never answer, so their outcome does not
# depend on the machine's speed either.
HANG_S = 300.0


def child_settings(folder: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "comfyui_dir": folder,
        "comfyui_python": sys.executable,
        "comfyui_port": free_port(),
        "comfyui_start_timeout_s": HANG_S,
        "comfyui_extra_args": "--cpu,--disable-all-custom-nodes",
    }
    return Settings.model_validate(values | overrides)


def alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 in a container may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_until(predicate, what: str) -> None:
    try:
        async with asyncio.timeout(HANG_S):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"hung: {what} not within {HANG_S:g} s")


def started_pids(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The children the supervisor started, from its log (a child that is stopped before it
    could write a file of its own is still found)."""
    return [r.pid for r in caplog.records if r.getMessage() == "ComfyUI started"]


async def version_at(url: str) -> str | None:
    client = ComfyClient(url)
    try:
        return await client.comfyui_version()
    finally:
        await client.aclose()


async def test_attach_mode_starts_nothing(tmp_path: Path):
    with serve_in_thread(ComfyDouble(tmp_path)) as double:
        settings = Settings.model_validate(
            {"comfyui_url": double.base_url + "/", "comfyui_output_dir": tmp_path / "out"}
        )
        supervisor = ComfySupervisor(settings)
        await supervisor.start()
        assert supervisor.health() == {
            "state": "attached",
            "pid": None,
            "restarts": 0,
            "url": double.base_url,
            "last_exit_code": None,
        }
        assert supervisor.input_dir is None  # unknown for a server we did not start
        assert supervisor.output_dir == tmp_path / "out"
        await supervisor.stop()
        assert await version_at(supervisor.base_url) == "0.3.64-double"  # left running


async def test_attach_to_nothing_fails_at_the_deadline():
    settings = Settings.model_validate(
        {"comfyui_url": f"http://127.0.0.1:{free_port()}", "comfyui_start_timeout_s": 0.3}
    )
    with pytest.raises(ComfyStartError, match="did not answer"):
        await ComfySupervisor(settings, poll_interval_s=0.05).start()


def test_needs_a_url_or_a_folder():
    with pytest.raises(ComfyStartError, match="COMFYUI_URL"):
        ComfySupervisor(Settings())


async def test_child_starts_with_comfyui_flags_and_streams_its_log(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    folder = comfy_dir(tmp_path, DOUBLE_MAIN)
    supervisor = ComfySupervisor(child_settings(folder), stop_grace_s=5)
    await supervisor.start()
    try:
        health = supervisor.health()
        assert health["state"] == "ready" and alive(health["pid"])
        assert await version_at(supervisor.base_url) == "0.3.64-double"
        argv = json.loads((folder / "argv.json").read_text())
        assert argv[1:] == [
            "--listen",
            "127.0.0.1",
            "--port",
            str(supervisor.settings.comfyui_port),
            "--disable-metadata",
            "--disable-api-nodes",
            "--cpu",
            "--disable-all-custom-nodes",
        ]
        assert (supervisor.input_dir, supervisor.output_dir) == (
            folder / "input",
            folder / "output",
        )
        child_lines = [r.getMessage() for r in caplog.records if r.name == "handler.comfy.comfyui"]
        assert any("To see the GUI go to" in line for line in child_lines)
    finally:
        await supervisor.stop()
    assert supervisor.health()["state"] == "stopped"
    assert not alive(health["pid"])


async def test_folders_are_passed_when_configured(tmp_path: Path):
    folder = comfy_dir(tmp_path, DOUBLE_MAIN)
    settings = child_settings(
        folder, comfyui_input_dir=tmp_path / "in", comfyui_output_dir=tmp_path / "out"
    )
    supervisor = ComfySupervisor(settings)
    await supervisor.start()
    try:
        argv = json.loads((folder / "argv.json").read_text())
        assert argv[argv.index("--input-directory") + 1] == str(tmp_path / "in")
        assert argv[argv.index("--output-directory") + 1] == str(tmp_path / "out")
        assert (tmp_path / "in").is_dir()  # the double created what it was told to use
        assert supervisor.input_dir == tmp_path / "in"
    finally:
        await supervisor.stop()


async def test_early_exit_is_a_clear_error_with_the_log_tail(tmp_path: Path, caplog):
    supervisor = ComfySupervisor(child_settings(comfy_dir(tmp_path, CRASH_MAIN)))
    with pytest.raises(ComfyStartError, match="exited with code 3"):
        await supervisor.start()
    assert supervisor.health()["state"] == "failed"
    assert supervisor.last_exit_code == 3
    # The child's last output is logged at ERROR, as a field of one record.
    tails = [getattr(r, "output", []) for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("No module named 'boom'" in line for tail in tails for line in tail)


async def test_readiness_deadline_kills_the_child(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    folder = comfy_dir(tmp_path, HANG_MAIN)  # never answers: the deadline passes on any machine
    settings = child_settings(folder, comfyui_start_timeout_s=1.0)
    supervisor = ComfySupervisor(settings, stop_grace_s=1.0, poll_interval_s=0.05)
    with pytest.raises(ComfyStartError, match=r"within 1 s"):
        await supervisor.start()
    [pid] = started_pids(caplog)
    assert not alive(pid)


async def test_restarts_a_child_that_dies(tmp_path: Path):
    folder = comfy_dir(tmp_path, DOUBLE_MAIN)
    supervisor = ComfySupervisor(child_settings(folder), restart_backoff_s=0.05, stop_grace_s=5)
    await supervisor.start()
    try:
        first = supervisor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # Not "restarting" first: on a fast machine that state may come and go between polls.
        await wait_until(
            lambda: supervisor.restarts == 1 and supervisor.health()["state"] == "ready",
            "the restart",
        )
        health = supervisor.health()
        assert health["pid"] not in (None, first)
        assert health["last_exit_code"] == -signal.SIGKILL
        assert await version_at(supervisor.base_url) == "0.3.64-double"
    finally:
        await supervisor.stop()


async def test_gives_up_after_bounded_restarts(tmp_path: Path):
    folder = comfy_dir(tmp_path, ONCE_MAIN)
    supervisor = ComfySupervisor(
        child_settings(folder), max_restarts=2, restart_backoff_s=0.01, stop_grace_s=5
    )
    await supervisor.start()
    try:
        os.kill(supervisor.pid or 0, signal.SIGKILL)
        await wait_until(lambda: supervisor.health()["state"] == "failed", "giving up")
        assert supervisor.health()["restarts"] == 2
        assert supervisor.last_exit_code == 1
    finally:
        await supervisor.stop()


async def test_stop_kills_the_whole_process_group(tmp_path: Path):
    folder = comfy_dir(tmp_path, STUBBORN_MAIN)
    supervisor = ComfySupervisor(child_settings(folder), stop_grace_s=0.3)
    await supervisor.start()
    main_pid = supervisor.pid
    grandchild = int((folder / "grandchild.pid").read_text())
    assert main_pid is not None and alive(main_pid) and alive(grandchild)
    try:
        async with asyncio.timeout(HANG_S):  # only catches a hang: SIGKILL follows 0.3 s on
            await supervisor.stop()
        await wait_until(lambda: not alive(main_pid) and not alive(grandchild), "the kill")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)  # never leave it behind when the test fails
    assert supervisor.last_exit_code is None  # stopping on purpose is not a crash
    assert supervisor.last_stop == "SIGKILL"


# As ComfyUI behaves: SIGINT ignored (as when launched in the background), no SIGTERM handler.
SIGINT_DEAF_MAIN = f"""
import signal, sys, time
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tests.fakes.comfy_double import ComfyDouble, serve_in_thread
signal.signal(signal.SIGINT, signal.SIG_IGN)
port = int(sys.argv[sys.argv.index("--port") + 1])
with serve_in_thread(ComfyDouble(Path.cwd()), port=port):
    while True:
        time.sleep(1)
"""


async def test_stop_ends_a_comfyui_that_ignores_sigint_without_the_kill(tmp_path: Path, caplog):
    folder = comfy_dir(tmp_path, SIGINT_DEAF_MAIN)
    # A grace far longer than any test: only a prompt exit on SIGTERM passes the check below.
    supervisor = ComfySupervisor(child_settings(folder), stop_grace_s=600)
    await supervisor.start()
    main_pid = supervisor.pid
    assert main_pid is not None
    await supervisor.stop()
    assert not alive(main_pid)
    assert supervisor.last_stop == "SIGTERM"
    assert "killing it" not in caplog.text


# ---- adopting only its own child ----------------------------------------------------------


async def test_a_stranger_on_the_port_is_an_error_naming_it(tmp_path: Path):
    """A server already answers /system_stats on COMFYUI_PORT: the worker fails fast, naming
    the port and the holder, and starts no child (it never talks to the stranger)."""
    folder = comfy_dir(tmp_path, DOUBLE_MAIN)
    with stranger_on() as stranger:
        supervisor = ComfySupervisor(child_settings(folder, comfyui_port=stranger.port))
        with pytest.raises(ComfyStartError) as info:
            await supervisor.start()
    message = str(info.value)
    assert f"port {stranger.port} on 127.0.0.1 is already in use" in message
    assert f"pid {os.getpid()}" in message  # the stranger runs in this test's process
    assert "COMFYUI_PORT" in message
    assert supervisor.health()["state"] == "failed"
    assert not (folder / "argv.json").exists()  # no child started
    assert stranger.requested == []


async def test_a_stranger_that_answers_for_a_child_is_not_adopted(
    tmp_path: Path, monkeypatch, caplog
):
    """The stranger took the port after the free-port check (a race): its answer does not
    count as the child's; the start fails and the child is stopped."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(ports, "port_is_free", lambda host, port: True)
    folder = comfy_dir(tmp_path, HANG_MAIN)  # never listens
    with stranger_on() as stranger:
        settings = child_settings(folder, comfyui_port=stranger.port)
        supervisor = ComfySupervisor(settings, stop_grace_s=1.0, poll_interval_s=0.05)
        with pytest.raises(ComfyStartError, match="not the ComfyUI the worker started") as info:
            await supervisor.start()
    assert f"the listening socket belongs to pid {os.getpid()}" in str(info.value)
    assert stranger.requested and set(stranger.requested) == {"/system_stats"}
    [pid] = started_pids(caplog)
    assert not alive(pid)


async def test_without_proc_the_reported_argv_decides(tmp_path: Path, monkeypatch):
    """Where socket owners are unknown, /system_stats' argv (ComfyUI reports sys.argv) must be
    the command the worker ran: a stranger's is refused, the child's accepted."""
    monkeypatch.setattr(ports, "PROC", tmp_path / "no-proc")
    monkeypatch.setattr(ports, "port_is_free", lambda host, port: True)
    folder = comfy_dir(tmp_path, HANG_MAIN)
    stranger_argv = ["main.py", "--listen", "127.0.0.1", "--port", "8188"]
    with stranger_on(argv=stranger_argv) as stranger:
        settings = child_settings(folder, comfyui_port=stranger.port)
        supervisor = ComfySupervisor(settings, stop_grace_s=1.0, poll_interval_s=0.05)
        with pytest.raises(ComfyStartError, match=r"reports argv \['main.py', '--listen'"):
            await supervisor.start()
    (tmp_path / "child").mkdir()
    own = ComfySupervisor(child_settings(comfy_dir(tmp_path / "child", DOUBLE_MAIN)))
    await own.start()
    try:
        assert own.health()["state"] == "ready"
    finally:
        await own.stop()


def test_listeners_names_who_holds_a_port():
    with stranger_on() as stranger:
        assert not ports.port_is_free("127.0.0.1", stranger.port)
        assert ports.listeners(stranger.port) == {os.getpid()}
        assert ports.describe(os.getpid()).startswith(f"pid {os.getpid()}: ")
    assert ports.port_is_free("127.0.0.1", stranger.port)
    assert ports.listeners(stranger.port) == set()
    assert ports.listeners(stranger.port, proc=Path("/nonexistent")) is None
