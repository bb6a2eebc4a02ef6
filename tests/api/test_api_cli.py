"""`python -m api_stub` commands, run as processes on the embedded database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api_stub", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_then_create_user_prints_a_working_key(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "LOG_LEVEL": "WARNING"}
    first = _run(["migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "[1]" in first.stdout
    assert "none" in _run(["migrate"], env).stdout
    created = _run(["create-user", "--credits", "25", "--name", "demo"], env)
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["credits"] == 25 and info["api_key"].startswith("sp_")

    from api_stub.auth import authenticate
    from api_stub.db import Database

    db = Database(env["DATABASE_URL"])
    user = authenticate(db, info["api_key"])
    db.close()
    assert user is not None and user.id == info["user_id"]


def test_gen_secret_prints_usable_values() -> None:
    out = _run(["gen-secret"], {}).stdout
    values = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert len(values["CALLBACK_MASTER_KEY"]) >= 32
    assert values["WEBHOOK_SECRETS"].startswith("whsec_")
