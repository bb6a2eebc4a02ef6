"""Numbered migrations (`migrations/NNN_name.sql`), applied once each, in order.

How the dialects diverge, decided before the second migration exists:

- `NNN_name.sql` is shared: Postgres DDL in the syntax both databases accept. For SQLite the
  few types it lacks are mapped to its storage classes; everything else (CHECK, partial unique
  indexes, foreign keys) is common syntax. Write a migration this way whenever it can be.
- Where it cannot (SQLite has no `ALTER COLUMN`, no `ADD CONSTRAINT`; a change there means the
  create-copy-drop-rename dance), add `NNN_name.sqlite.sql` and/or `NNN_name.postgres.sql`
  beside it: a dialect's own file replaces the shared one for that dialect only, and is run as
  written (no type mapping). A version needs a shared file or both dialects' files, and one
  name: `load_migrations` refuses anything else.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from api_stub.db import Database, Dialect, Tx

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)(?:\.(postgres|sqlite))?\.sql$")
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
    sql: str | None  # the shared file (None when both dialects have their own)
    own: dict[Dialect, str] = field(default_factory=dict)  # per-dialect replacements

    def sql_for(self, dialect: Dialect) -> str:
        if dialect in self.own:
            return self.own[dialect]
        if self.sql is None:  # load_migrations prevents this
            raise RuntimeError(f"migration {self.version:03d} has no SQL for {dialect}")
        return self.sql if dialect == "postgres" else to_sqlite(self.sql)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files: dict[int, list[tuple[str, str | None, str]]] = {}
    for path in sorted(directory.iterdir()):
        match = _FILE.match(path.name)
        if match:
            files.setdefault(int(match[1]), []).append((match[2], match[3], path.read_text()))
    found = []
    for version, parts in sorted(files.items()):
        names = {name for name, _, _ in parts}
        dialects = [dialect for _, dialect, _ in parts]
        if len(names) != 1 or len(set(dialects)) != len(dialects):
            raise RuntimeError(f"duplicate migration numbers in {directory}: {version:03d}")
        shared = next((sql for _, dialect, sql in parts if dialect is None), None)
        own = {cast(Dialect, d): sql for _, d, sql in parts if d is not None}
        if shared is None and set(own) != {"postgres", "sqlite"}:
            raise RuntimeError(
                f"migration {version:03d} needs a shared .sql or both dialects' files"
            )
        found.append(Migration(version, names.pop(), shared, own))
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
            tx.script(migration.sql_for(tx.dialect))
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied_now.append(migration.version)
            log.info("migration applied", extra={"version": migration.version})
    return applied_now
