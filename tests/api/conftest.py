"""Fixtures for the control plane: real databases (SQLite file, Postgres schema), the app over
httpx's ASGI transport, users with credits.

Postgres: a fresh schema per test session in SIMPLYPNG_TEST_PG_DSN (default
postgresql://postgres@127.0.0.1:5432/test), emptied between tests. When the server cannot be
reached, the Postgres variants are skipped with a message naming the variable.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from api_stub.app import create_app
from api_stub.auth import NewUser, create_user
from api_stub.db import Database
from api_stub.db.migrate import migrate
from api_stub.services import Services
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import FakeRunpod
from api_stub.testing.server import LoopbackServer
from tests.fakes.services import postgres_missing

PG_DSN = os.environ.get("SIMPLYPNG_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = (
    "webhook_events",
    "credit_ledger",
    "rate_buckets",
    "jobs",
    "batches",
    "balances",
    "api_keys",
    "users",
)


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A Postgres URL whose search_path is a schema made for this session."""
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        postgres_missing(f"Postgres unreachable at SIMPLYPNG_TEST_PG_DSN={PG_DSN}: {exc}")
    schema = f"api_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_DSN else "?"
    url = f"{PG_DSN}{separator}options={quote(f'-csearch_path={schema}')}"
    db = Database(url, pool_size=2)
    migrate(db)
    db.close()
    try:
        yield url
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def _empty_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each core test runs on the embedded default and on Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'simplypng.db'}"
        db = Database(url)
        migrate(db)
        db.close()
        return url
    url: str = request.getfixturevalue("pg_schema_url")
    _empty_pg(url)
    return url


@pytest.fixture
def pg_url(pg_schema_url: str) -> str:
    """Postgres only (tests of SKIP LOCKED, advisory locks and LISTEN/NOTIFY)."""
    _empty_pg(pg_schema_url)
    return pg_schema_url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, pool_size=60)
    yield database
    database.close()


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., ApiSettings]:
    def build(database_url: str, **overrides: Any) -> ApiSettings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "callback_master_key": "m" * 48,
            "public_base_url": "http://testserver",
            "local_storage_dir": tmp_path / "storage",
            "runpod_endpoint_url": "http://127.0.0.1:9",  # discard port: nothing listens
            "dispatch_backoff_s": 0.01,
            "rate_limit_burst": 1000,
            "rate_limit_per_s": 1000,
            **overrides,
        }
        return ApiSettings.model_validate(values)

    return build


@pytest.fixture
def make_settings(
    db_url: str, settings_factory: Callable[..., ApiSettings]
) -> Callable[..., ApiSettings]:
    """ApiSettings on the parametrised database, with overrides."""
    return functools.partial(settings_factory, db_url)


@pytest.fixture
def settings(make_settings: Callable[..., ApiSettings]) -> ApiSettings:
    return make_settings()


@pytest.fixture
def services(settings: ApiSettings, db: Database) -> Iterator[Services]:
    svc = Services.from_settings(settings, db=db)
    yield svc
    svc.runpod.close()


@pytest.fixture
async def client(settings: ApiSettings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def client_for(
    make_settings: Callable[..., ApiSettings], db: Database
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with client_for(**setting_overrides) as http:` an app with other settings;
    `clock=` gives the app a clock of the test's own."""

    @asynccontextmanager
    async def open_client(
        clock: Callable[[], float] = time.time, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(**overrides)
        svc = Services.from_settings(settings, db=db, clock=clock)
        transport = httpx.ASGITransport(app=create_app(settings, services=svc))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http
        finally:
            svc.runpod.close()

    return open_client


@pytest.fixture
def new_user(db: Database) -> Callable[..., NewUser]:
    def make(credits_granted: int = 100, name: str = "user") -> NewUser:
        return create_user(db, name=name, credits_granted=credits_granted, now=time.time())

    return make


@pytest.fixture
def alice(new_user: Callable[..., NewUser]) -> NewUser:
    return new_user(100, "alice")


@pytest.fixture
def fake() -> Iterator[FakeRunpod]:
    """A fake Runpod endpoint on loopback (Bearer key `rp-test-key`); `fake.url` is its URL.

    Its worker neither fetches inputs nor uploads outputs: these tests have no storage server.
    """
    endpoint = FakeRunpod(
        api_key="rp-test-key", fetch_inputs=False, upload_outputs=False, default="hang"
    )
    server = LoopbackServer(endpoint.app).start()
    endpoint.url = server.url
    yield endpoint
    endpoint.close()
    server.stop()
