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
