"""`python -m api_stub` commands: as processes on the embedded database, and through `main(argv)`
for bad input, which must end in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from api_stub.__main__ import main
from api_stub.db import Database
from api_stub.db.migrate import migrate
from tests.fakes.services import postgres_missing

REPO = Path(__file__).resolve().parents[2]
PG_DSN = os.environ.get("SIMPLYPNG_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
Cli = Callable[..., tuple[int, str, str]]


def _run(
    args: list[str], env: dict[str, str], cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "api_stub", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_path: Path
) -> Iterator[Cli]:
    """`cli(*argv)` runs main() here on DATABASE_URL=db_path, from an empty working folder;
    returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.delenv("CALLBACK_MASTER_KEY", raising=False)
    monkeypatch.chdir(db_path.parent)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() installs its JSON log handler

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own exit
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    yield call
    root.handlers[:] = handlers
    root.setLevel(level)


def _migrated(cli: Cli) -> None:
    code, _, err = cli("migrate")
    assert code == 0, err


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

    db = Database(env["DATABASE_URL"])
    user = authenticate(db, info["api_key"])
    db.close()
    assert user is not None and user.id == info["user_id"]


def test_gen_secret_prints_usable_values() -> None:
    out = _run(["gen-secret"], {}).stdout
    values = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert len(values["CALLBACK_MASTER_KEY"]) >= 32
    assert values["WEBHOOK_SECRETS"].startswith("whsec_")


def test_grant_adds_credits_and_prints_the_new_balance(cli: Cli) -> None:
    _migrated(cli)
    code, out, err = cli("create-user", "--credits", "5")
    assert code == 0, err
    user_id = json.loads(out)["user_id"]
    code, out, err = cli("grant", "--user-id", user_id.upper(), "--credits", "7")
    assert code == 0, err
    assert json.loads(out) == {"user_id": user_id, "granted": 7, "available": 12, "held": 0}
    code, out, _ = cli("grant", "--user-id", user_id, "--credits", "1")
    assert json.loads(out)["available"] == 13


def test_grant_to_an_unknown_user_fails_without_writing(cli: Cli, db_path: Path) -> None:
    _migrated(cli)
    user_id = str(uuid.uuid4())
    code, out, err = cli("grant", "--user-id", user_id, "--credits", "3")
    # A mistake the user can fix: one line on stderr and status 2, as the CLI promises.
    assert (code, out) == (2, "")
    assert err == f"python -m api_stub: error: no such user: {user_id}\n"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM credit_ledger").fetchone() == (0,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create-user", "--credits", "-5"], "-5 is less than 0"),
        (["create-user", "--credits", "lots"], "'lots' is not a whole number"),
        (["grant", "--user-id", str(uuid.uuid4()), "--credits", "-5"], "-5 is less than 1"),
        (["grant", "--user-id", str(uuid.uuid4()), "--credits", "0"], "0 is less than 1"),
        (["grant", "--user-id", "nope", "--credits", "5"], "'nope' is not a user id"),
    ],
)
def test_bad_arguments_are_refused_before_any_database_work(
    cli: Cli, db_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = cli(*argv)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err
    assert not db_path.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["create-user", "--credits", "3"],
        ["grant", "--user-id", str(uuid.uuid4()), "--credits", "3"],
        ["serve"],
        ["dispatcher", "--once"],
        ["reconciler", "--once"],
    ],
)
def test_a_missing_database_is_not_created_by_other_commands(
    cli: Cli, db_path: Path, argv: list[str]
) -> None:
    code, out, err = cli(*argv)
    assert (code, out) == (2, "")
    assert f"no database at {db_path}" in err and "python -m api_stub migrate` first" in err
    assert not db_path.exists()


def test_the_default_database_is_not_created_in_the_working_folder(tmp_path: Path) -> None:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    done = _run(["create-user", "--credits", "3"], env, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "migrate` first" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_schema_is_refused(cli: Cli, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    code, _, err = cli("create-user")
    assert code == 2 and "the database is not migrated" in err and "Traceback" not in err


def test_a_database_missing_a_migration_is_refused(cli: Cli, db_path: Path) -> None:
    db = Database(f"sqlite:///{db_path}")
    assert migrate(db, []) == []  # the bookkeeping table only, no migration applied
    db.close()
    code, _, err = cli("grant", "--user-id", str(uuid.uuid4()), "--credits", "1")
    assert code == 2 and "the database lacks migrations [1]" in err
    _migrated(cli)
    code, _, err = cli("create-user")
    assert code == 0, err


@pytest.mark.postgres
def test_an_empty_postgres_schema_is_refused(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        postgres_missing(f"Postgres unreachable at SIMPLYPNG_TEST_PG_DSN={PG_DSN}: {exc}")
    schema = f"cli_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_DSN else "?"
    monkeypatch.setenv(
        "DATABASE_URL", f"{PG_DSN}{separator}options={quote(f'-csearch_path={schema}')}"
    )
    try:
        code, _, err = cli("create-user", "--credits", "1")
        assert code == 2 and "the database is not migrated" in err
        _migrated(cli)
        code, out, err = cli("create-user", "--credits", "1")
        assert code == 0 and json.loads(out)["credits"] == 1, err
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_bad_settings_name_the_variable_but_not_its_value(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACK_MASTER_KEY", "too-short-but-secret")
    code, out, err = cli("openapi")
    assert (code, out) == (2, "")
    assert "CALLBACK_MASTER_KEY" in err and "too-short-but-secret" not in err


def test_an_unknown_database_scheme_is_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nowhere/db")
    code, _, err = cli("migrate")
    assert code == 2 and "DATABASE_URL must start with" in err and "Traceback" not in err


def test_audit_reports_clean_books_and_exits_1_on_a_problem(cli: Cli, db_path: Path) -> None:
    _migrated(cli)
    code, out, err = cli("create-user", "--credits", "5")
    assert code == 0, err
    user_id = json.loads(out)["user_id"]
    code, out, err = cli("audit")
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "jobs": 0, "by_status": {}, "problems": []}
    with sqlite3.connect(db_path) as conn:  # books that no longer balance
        conn.execute("UPDATE balances SET available = available + 1 WHERE user_id = ?", (user_id,))
    code, out, _ = cli("audit")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and report["problems"], report
