"""Numbered migrations (`migrations/NNN_name.sql`), applied once each, in order.

The files are Postgres DDL. For SQLite the few types it lacks are mapped to its storage
classes; everything else (CHECK, partial unique indexes, foreign keys) is common syntax.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from api_stub.db import Database, Tx

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `migrate` runs on Postgres (transaction-scoped, released at commit).
_MIGRATE_LOCK_KEY = 0x51_4D_50_4E_47_01
_SQLITE_TYPES = (
    (re.compile(r"\bUUID\b"), "TEXT"),
    (re.compile(r"\bJSONB\b"), "TEXT"),
    (re.compile(r"\bDOUBLE PRECISION\b"), "REAL"),
    (re.compile(r"\bBIGINT\b"), "INTEGER"),
    (re.compile(r"\bINT\b"), "INTEGER"),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {directory}")
    return found


def to_sqlite(sql: str) -> str:
    for pattern, replacement in _SQLITE_TYPES:
        sql = pattern.sub(replacement, sql)
    return sql


def _ensure_table(tx: Tx) -> None:
    tx.script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        if tx.dialect == "postgres"
        else "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )


def migrate(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations; return the versions applied now."""
    pending = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    with db.transaction() as tx:
        if tx.dialect == "postgres":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK_KEY,))
        _ensure_table(tx)
        done = {row["version"] for row in tx.all("SELECT version FROM schema_migrations")}
        for migration in pending:
            if migration.version in done:
                continue
            sql = migration.sql if tx.dialect == "postgres" else to_sqlite(migration.sql)
            tx.script(sql)
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied_now.append(migration.version)
            log.info("migration applied", extra={"version": migration.version})
    return applied_now
