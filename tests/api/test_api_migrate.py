"""Migrations apply once, on both backends, and the schema enforces the money invariants."""

from __future__ import annotations

import time
import uuid

import pytest

from api_stub.auth import NewUser
from api_stub.db import INTEGRITY_ERRORS, Database
from api_stub.db.migrate import load_migrations, migrate, to_sqlite


def test_migrate_is_idempotent(db: Database) -> None:
    assert migrate(db) == []  # the fixture applied everything already
    with db.transaction(write=False) as tx:
        versions = [r["version"] for r in tx.all("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in load_migrations()]


def test_sqlite_type_mapping_leaves_names_alone() -> None:
    sql = "CREATE TABLE t (id UUID, info JSONB, at DOUBLE PRECISION, n BIGINT, m INT, printed TEXT)"
    assert to_sqlite(sql) == (
        "CREATE TABLE t (id TEXT, info TEXT, at REAL, n INTEGER, m INTEGER, printed TEXT)"
    )


def test_balances_cannot_go_negative(db: Database, alice: NewUser) -> None:
    with pytest.raises(INTEGRITY_ERRORS), db.transaction() as tx:
        tx.execute("UPDATE balances SET available = -1 WHERE user_id = ?", (alice.user.id,))


def test_one_settlement_per_job(db: Database, alice: NewUser) -> None:
    from api_helpers import make_jobs

    [job_id] = make_jobs(db, alice, 1)
    insert = (
        "INSERT INTO credit_ledger (id, user_id, job_id, kind, delta, held_delta, created_at)"
        " VALUES (?, ?, ?, ?, 0, -1, ?)"
    )
    with db.transaction() as tx:
        tx.execute(insert, (str(uuid.uuid4()), alice.user.id, job_id, "capture", time.time()))
    with pytest.raises(INTEGRITY_ERRORS), db.transaction() as tx:
        tx.execute(insert, (str(uuid.uuid4()), alice.user.id, job_id, "release", time.time()))


def test_named_parameters_run_on_both_backends(db: Database) -> None:
    """`:name` placeholders with a mapping; a Postgres cast (`::`) is not a placeholder."""
    cast = "CAST(:word AS TEXT)" if db.dialect == "sqlite" else ":word::text"
    with db.transaction(write=False) as tx:
        row = tx.one(f"SELECT {cast} AS word, :n + :n AS twice", {"word": "hi", "n": 21})
    assert row == {"word": "hi", "twice": 42}


def _write(folder, files: dict[str, str]):
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


def test_a_dialect_file_replaces_the_shared_one_for_that_dialect(tmp_path) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "001_init.sql": "CREATE TABLE t (id UUID PRIMARY KEY);",
            "002_widen.sql": "ALTER TABLE t ALTER COLUMN id TYPE TEXT;",
            "002_widen.sqlite.sql": "CREATE TABLE t2 (id TEXT PRIMARY KEY);",
            "003_both.postgres.sql": "SELECT 1;",
            "003_both.sqlite.sql": "SELECT 2;",
        },
    )
    first, widen, both = load_migrations(folder)
    assert first.sql_for("sqlite") == "CREATE TABLE t (id TEXT PRIMARY KEY);"  # type-mapped
    assert widen.sql_for("postgres") == "ALTER TABLE t ALTER COLUMN id TYPE TEXT;"
    assert widen.sql_for("sqlite") == "CREATE TABLE t2 (id TEXT PRIMARY KEY);"  # as written
    assert (both.sql_for("postgres"), both.sql_for("sqlite")) == ("SELECT 1;", "SELECT 2;")


@pytest.mark.parametrize(
    "files",
    [
        {"001_a.sql": "", "001_b.sql": ""},  # two names for one version
        {"001_a.postgres.sql": ""},  # one dialect only, no shared file
    ],
)
def test_inconsistent_migration_files_are_refused(tmp_path, files) -> None:
    with pytest.raises(RuntimeError, match="001"):
        load_migrations(_write(tmp_path / "m", files))


def test_a_sqlite_only_migration_applies_on_sqlite(tmp_path) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "001_init.sql": "CREATE TABLE t (id UUID PRIMARY KEY, n INT);",
            "002_rebuild.postgres.sql": "ALTER TABLE t ALTER COLUMN n TYPE BIGINT;",
            "002_rebuild.sqlite.sql": (
                "CREATE TABLE t_new (id TEXT PRIMARY KEY, n INTEGER);\n"
                "INSERT INTO t_new SELECT id, n FROM t;\nDROP TABLE t;\n"
                "ALTER TABLE t_new RENAME TO t;\n"
            ),
        },
    )
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert migrate(db, load_migrations(folder)) == [1, 2]
        with db.transaction(write=False) as tx:
            names = [r["name"] for r in tx.all("SELECT name FROM schema_migrations")]
            assert names == ["init", "rebuild"]
            assert tx.one("SELECT COUNT(*) AS n FROM t") == {"n": 0}
    finally:
        db.close()
