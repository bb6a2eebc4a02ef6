"""A small adapter that runs the same SQL on Postgres (psycopg) and on SQLite (stdlib).

Queries take positional `?` placeholders with a sequence of parameters, or named `:name`
placeholders with a mapping (use names wherever a statement has more than a few: a long
positional tuple breaks silently when a column is added). The Postgres side rewrites them to
`%s` / `%(name)s`, so SQL text must not hold a literal `?`, `%` or `:word` (Postgres casts,
`::type`, are fine). Rows come back as plain dicts on both sides, ids as `str` and JSON columns
as `str` (callers json.loads them), so no code path depends on the backend. Transactions are
explicit: `with db.transaction() as tx:`. Migrations: see migrate.py.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

Dialect = Literal["postgres", "sqlite"]
Params = Sequence[Any] | Mapping[str, Any]
Row = dict[str, Any]

# A named placeholder, not a Postgres cast (`x::text`) nor part of a longer word.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# Unique or check violations on either backend.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    psycopg.errors.IntegrityError,
    sqlite3.IntegrityError,
)


class Tx(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int: ...
    def one(self, sql: str, params: Params = ()) -> Row | None: ...
    def all(self, sql: str, params: Params = ()) -> list[Row]: ...
    def script(self, sql: str) -> None: ...
    def notify(self, channel: str) -> None: ...


class _PgTx:
    dialect: Dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Row]):
        self._conn = conn

    @staticmethod
    def _sql(sql: str, params: Params) -> str:
        if isinstance(params, Mapping):
            return _NAMED.sub(r"%(\1)s", sql)
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Params = ()) -> int:
        cur = self._conn.execute(self._sql(sql, params), params)
        return cur.rowcount

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return self._conn.execute(self._sql(sql, params), params).fetchone()

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(self._sql(sql, params), params).fetchall()

    def script(self, sql: str) -> None:
        self._conn.execute(sql)  # no params: several statements are fine

    def notify(self, channel: str) -> None:
        # Delivered at commit, so a listener never sees a row that is not there yet.
        self._conn.execute(f"NOTIFY {channel}")


class _SqliteTx:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> int:
        cur = self._conn.execute(sql, _sqlite_params(params))
        count = cur.rowcount
        # RETURNING rows must be consumed before the statement is complete.
        cur.fetchall()
        return count

    def one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        cur = self._conn.execute(sql, _sqlite_params(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def script(self, sql: str) -> None:
        # executescript would COMMIT first; run statement by statement inside our transaction.
        for statement in _statements(sql):
            self._conn.execute(statement)

    def notify(self, channel: str) -> None:
        return None  # SQLite has no LISTEN/NOTIFY: dispatchers poll.


def _sqlite_params(params: Params) -> tuple[Any, ...] | dict[str, Any]:
    """sqlite3 takes `:name` with a dict and `?` with a tuple, as our SQL does."""
    return dict(params) if isinstance(params, Mapping) else tuple(params)


def _statements(sql: str) -> Iterator[str]:
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer


class Database:
    """Connections and transactions for one DATABASE_URL."""

    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url
        self.dialect: Dialect
        if url.startswith(("postgres://", "postgresql://")):
            self.dialect = "postgres"
            self._pool: ConnectionPool[Any] | None = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": False, "row_factory": dict_row},
                configure=_configure_pg,
                open=True,
            )
            self._sqlite_path = ""
        elif url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self._pool = None
            self._sqlite_path = url.removeprefix("sqlite:///")
        else:
            raise ValueError("DATABASE_URL must start with postgresql:// or sqlite:///")
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._lock = threading.Lock()

    # --- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """One transaction; commits on success, rolls back on any exception.

        SQLite write transactions start with BEGIN IMMEDIATE so writers serialise up front
        instead of failing to upgrade a read lock later.
        """
        if self._pool is not None:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
            return
        conn = self._sqlite_conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            conn.close()
            raise
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                conn.close()
                raise
            self._idle.put(conn)
            raise
        self._idle.put(conn)

    @contextmanager
    def listen(self, channel: str) -> Iterator[psycopg.Connection[Any] | None]:
        """A dedicated autocommit connection LISTENing on channel (None on SQLite)."""
        if self._pool is None:
            yield None
            return
        conn = psycopg.connect(self.url, autocommit=True)
        try:
            conn.execute(f"LISTEN {channel}")
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        while not self._idle.empty():
            self._idle.get_nowait().close()

    # --- sqlite connections ------------------------------------------------------------
    def _sqlite_conn(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        conn = sqlite3.connect(
            self._sqlite_path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        with self._lock:
            # WAL lets readers run beside the single writer; set once, it persists in the file.
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


def _configure_pg(conn: psycopg.Connection[Any]) -> None:
    # Load uuid and json columns as text so both backends hand callers the same types.
    for type_name in ("uuid", "json", "jsonb"):
        conn.adapters.register_loader(type_name, TextLoader)


def in_list(values: Sequence[Any]) -> str:
    """Placeholders for an IN (...) list: `?, ?, ?`."""
    if not values:
        raise ValueError("empty IN list")
    return ", ".join("?" for _ in values)


def named_in_list(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """Named placeholders for an IN (...) list, `:p0, :p1`, and their parameters."""
    if not values:
        raise ValueError("empty IN list")
    params = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{name}" for name in params), params
