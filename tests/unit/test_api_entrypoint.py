"""docker/api-entrypoint.sh, the api image's entry point, run for real against an empty data
folder (the image's fresh /data volume): the documented first run must serve, with the
database migrated and CALLBACK_MASTER_KEY settled, and never print the key.

The script runs with this checkout's virtualenv Python first on PATH, as `python` is in the
image; DATABASE_URL points into a temporary folder instead of /data.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "api-entrypoint.sh"
KEY_NAME = "callback_master_key"
PG_URL = "postgresql://simplypng:pg-password-123@db.invalid:5432/simplypng"


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CALLBACK_MASTER_KEY", "CALLBACK_MASTER_KEY_FILE", "MIGRATE_ON_START")
        and not k.startswith(("DATABASE_", "STORAGE", "S3_", "RUNPOD_"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=f"sqlite:///{data}/simplypng.db",
        LOCAL_STORAGE_DIR=str(data / "storage"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def _run(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), *args],
        env=_env(data, **extra),
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STOPPED = (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it got


def _serve(data: Path, **extra: str) -> tuple[int, str, str]:
    """Start `serve` through the entry point, wait for /healthz, stop it with SIGTERM (as
    `docker stop` does); returns (exit status, stdout, stderr)."""
    port = _free_port()
    proc = subprocess.Popen(
        ["sh", str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(data, **extra),
        cwd=data.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the server exited with {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # exec: the server is the entry point's own process, so the signal reaches it
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        with pytest.raises(OSError):  # the server itself stopped, not just a shell around it
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_the_first_run_on_an_empty_volume_serves(data):
    code, out, err = _serve(data)
    assert code in STOPPED, err
    db, key_file = data / "simplypng.db", data / KEY_NAME
    assert "schema_migrations" in _tables(db)
    key = key_file.read_text(encoding="utf-8").strip()
    assert len(key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key not in out + err  # never logged
    assert f"generated CALLBACK_MASTER_KEY into {key_file}" in err
    # A restart keeps the key (per-job callback keys of running jobs stay valid) and the
    # migration is a no-op.
    before = key_file.stat()
    code, out, err = _serve(data)
    assert code in STOPPED, err
    after = key_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert key_file.read_text(encoding="utf-8").strip() == key
    assert "generated" not in err and "applied migrations: none (up to date)" in out


def test_one_shot_commands_migrate_first_and_need_no_key(data):
    done = _run(data, "create-user", "--credits", "5")
    assert done.returncode == 0, done.stderr
    assert '"credits": 5' in done.stdout and "applied migrations: [" in done.stdout
    assert not (data / KEY_NAME).exists()  # only the long-running processes use the key


def test_migrate_on_start_can_be_turned_off(data):
    done = _run(data, "create-user", MIGRATE_ON_START="0")
    assert done.returncode == 2
    assert "run `python -m api_stub migrate` first" in done.stderr
    bad = _run(data, "create-user", MIGRATE_ON_START="yes")
    assert bad.returncode == 2 and "MIGRATE_ON_START must be 1" in bad.stderr


def test_a_given_key_is_used_and_nothing_is_written(data):
    given = "k" * 40
    code, out, err = _serve(data, CALLBACK_MASTER_KEY=given)
    assert code in STOPPED, err
    assert not (data / KEY_NAME).exists()
    assert given not in out + err


def test_a_key_file_is_read_and_must_exist(data, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 48 + "\n", encoding="utf-8")
    secret.chmod(0o444)  # as Docker secrets are mounted: readable, and accepted as such
    code, _, err = _serve(data, CALLBACK_MASTER_KEY_FILE=str(secret))
    assert code in STOPPED, err
    assert not (data / KEY_NAME).exists()
    missing = _run(data, "serve", CALLBACK_MASTER_KEY_FILE=str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "CALLBACK_MASTER_KEY_FILE" in missing.stderr and "not a readable file" in missing.stderr


def test_postgres_without_a_key_refuses_to_start_and_leaks_nothing(data):
    done = _run(data, "serve", DATABASE_URL=PG_URL)
    assert done.returncode == 2
    assert "CALLBACK_MASTER_KEY is required" in done.stderr
    assert "pg-password-123" not in done.stderr + done.stdout
    assert list(data.iterdir()) == []  # no key generated, no database touched


def test_a_short_or_shared_key_file_is_refused(data):
    key_file = data / KEY_NAME
    key_file.write_text("short\n", encoding="utf-8")
    key_file.chmod(0o600)
    short = _run(data, "serve")
    assert short.returncode == 2 and "fewer than the 32 characters" in short.stderr
    key_file.write_text("x" * 40, encoding="utf-8")
    key_file.chmod(0o644)
    shared = _run(data, "serve")
    assert shared.returncode == 2 and "readable by other users" in shared.stderr
    assert "x" * 40 not in shared.stderr


def test_a_volume_the_user_cannot_write_is_named(data):
    # As a /data that is not mounted or not writable by uid 10001 (root may write anywhere,
    # so a missing folder stands in for an unwritable one here).
    missing = data / "not-mounted"
    url = f"sqlite:///{missing}/simplypng.db"
    for command in ("serve", "create-user"):
        done = _run(data, command, DATABASE_URL=url)
        assert done.returncode == 2, command
        assert f"{missing} is not a folder writable by uid" in done.stderr, command
    assert not missing.exists()


def test_bare_commands_and_other_programs(data):
    # a bare api_stub command is `python -m api_stub <command>`
    done = _run(data, "gen-secret")
    assert done.returncode == 0 and done.stdout.startswith("CALLBACK_MASTER_KEY=")
    # anything else runs untouched: no key, no migration
    other = _run(data, "sh", "-c", "echo hello")
    assert (other.returncode, other.stdout) == (0, "hello\n")
    assert list(data.iterdir()) == []


@pytest.fixture(autouse=True)
def _needs_posix_sh() -> Iterator[None]:
    if os.name != "posix":
        pytest.skip("the entry point is a POSIX shell script")
    yield
