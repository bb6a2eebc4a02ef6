"""Command line: `python -m api_stub <command>`.

migrate                         apply database migrations
create-user --credits N         create a user with credits; prints the API key once
grant --user-id ID --credits N  add credits to a user; prints the new balance
serve                           run the API (uvicorn)
dispatcher [--once]             run a dispatcher process
reconciler [--once]             run a reconciler process
gen-secret                      print a random CALLBACK_MASTER_KEY and a whsec_ secret
openapi                         print the OpenAPI document
audit [--allow-open]            check the books: no job charged twice, none charged for a
                                failure, no hold left on a finished job, ledgers sum to
                                balances; prints a JSON report, exit 1 on any problem

Every command but migrate, gen-secret and openapi refuses a database that migrate has not
brought up to date. Mistakes (bad arguments, settings or database) print one line on stderr
and exit with status 2.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import secrets
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from pydantic import ValidationError

from api_stub.services import ConfigError
from api_stub.settings import ApiSettings

if TYPE_CHECKING:
    from api_stub.db import Database

log = logging.getLogger("api_stub.cli")
MIGRATE_FIRST = "run `python -m api_stub migrate` first"
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
# Short commands whose database errors are the user's to fix; the long-running ones keep their
# tracebacks (a failure there is an incident, not a typo).
_ONE_SHOT = frozenset({"migrate", "create-user", "grant", "audit"})
_NO_SCHEMA = frozenset({"migrate", "gen-secret", "openapi"})


class CliError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number not below `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _user_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a user id (a UUID)") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api_stub", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations")
    user = sub.add_parser("create-user", help="create a user; prints the API key")
    user.add_argument("--credits", type=_int_at_least(0), default=0)
    user.add_argument("--name", default="user")
    user.add_argument("--priority", type=int, default=0)
    grant = sub.add_parser("grant", help="add credits to a user; prints the new balance")
    grant.add_argument("--user-id", type=_user_id, required=True)
    grant.add_argument("--credits", type=_int_at_least(1), required=True)
    serve = sub.add_parser("serve", help="run the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    for name in ("dispatcher", "reconciler"):
        worker = sub.add_parser(name, help=f"run a {name} process")
        worker.add_argument("--once", action="store_true", help="one pass, then exit")
        worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port")
    sub.add_parser("gen-secret", help="print fresh secrets")
    sub.add_parser("openapi", help="print the OpenAPI document")
    check = sub.add_parser("audit", help="check jobs, charges and ledgers; exit 1 on a problem")
    check.add_argument(
        "--allow-open", action="store_true", help="jobs may still be queued or running"
    )
    args = parser.parse_args(argv)

    if args.command == "gen-secret":
        print(f"CALLBACK_MASTER_KEY={secrets.token_urlsafe(48)}")
        print(f"WEBHOOK_SECRETS=whsec_{base64.b64encode(secrets.token_bytes(32)).decode()}")
        return 0

    try:
        settings = ApiSettings.from_env()
    except ValidationError as exc:
        return _fail(f"invalid settings: {_describe(exc)}")
    from api_stub.logs import configure_logging

    configure_logging(settings.log_level)
    handlers = {
        "migrate": _migrate,
        "create-user": _create_user,
        "grant": _grant,
        "serve": _serve,
        "dispatcher": _dispatcher,
        "reconciler": _reconciler,
        "openapi": _openapi,
        "audit": _audit,
    }
    try:
        if args.command not in _NO_SCHEMA:
            _require_schema(settings.database_url)
    except CliError as exc:
        return _fail(str(exc))
    except DB_ERRORS as exc:
        return _fail(f"cannot read the database: {_first_line(exc)}")
    try:
        return handlers[args.command](settings, args)
    except (CliError, ConfigError) as exc:
        return _fail(str(exc))
    except DB_ERRORS as exc:
        if args.command not in _ONE_SHOT:
            raise
        return _fail(f"database error: {_first_line(exc)}")


def _fail(message: str) -> int:
    print(f"python -m api_stub: error: {message}", file=sys.stderr)
    return 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(exc: ValidationError) -> str:
    """Each bad variable and why, never its value (it may be a secret)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in error["loc"]).upper() or "settings"
        parts.append(f"{name}: {error['msg']}")
    return "; ".join(parts)


def _open(url: str) -> Database:
    from api_stub.db import Database

    try:
        return Database(url, pool_size=1)
    except ValueError as exc:  # an unknown DATABASE_URL scheme
        raise CliError(str(exc)) from None


def _require_schema(url: str) -> None:
    """Refuse a database that migrate has not brought up to date (or that does not exist:
    sqlite3 would otherwise create an empty file wherever DATABASE_URL points, the working
    folder by default)."""
    from api_stub.db.migrate import load_migrations

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if path is not None and path != ":memory:" and not Path(path).is_file():
        raise CliError(f"no database at {path}; {MIGRATE_FIRST}")
    db = _open(url)
    try:
        with db.transaction(write=False) as tx:
            rows = tx.all("SELECT version FROM schema_migrations")
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable) as exc:
        if isinstance(exc, sqlite3.OperationalError) and "no such table" not in str(exc):
            raise
        raise CliError(f"the database is not migrated; {MIGRATE_FIRST}") from None
    finally:
        db.close()
    pending = sorted({m.version for m in load_migrations()} - {int(r["version"]) for r in rows})
    if pending:
        raise CliError(f"the database lacks migrations {pending}; {MIGRATE_FIRST}")


def _migrate(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.db.migrate import migrate

    db = _open(settings.database_url)
    try:
        applied = migrate(db)
    finally:
        db.close()
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _create_user(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.auth import create_user

    db = _open(settings.database_url)
    try:
        created = create_user(
            db,
            name=args.name,
            credits_granted=args.credits,
            now=time.time(),
            priority=args.priority,
        )
    finally:
        db.close()
    print(
        json.dumps(
            {"user_id": created.user.id, "api_key": created.api_key, "credits": args.credits}
        )
    )
    return 0


def _audit(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.audit import audit

    db = _open(settings.database_url)
    try:
        report = audit(db, require_terminal=not args.allow_open)
    finally:
        db.close()
    print(
        json.dumps(
            {
                "ok": report.ok,
                "jobs": report.jobs,
                "by_status": report.by_status,
                "problems": report.problems,
            }
        )
    )
    return 0 if report.ok else 1


def _grant(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub import credits

    db = _open(settings.database_url)
    try:
        with db.transaction() as tx:
            if credits.balance(tx, args.user_id) is None:
                raise CliError(f"no such user: {args.user_id}")  # exit 2; nothing written
            credits.grant(tx, args.user_id, args.credits, now=time.time(), note="cli grant")
            after = credits.balance(tx, args.user_id)
    finally:
        db.close()
    assert after is not None  # the row was there a moment ago, inside this transaction
    print(
        json.dumps(
            {
                "user_id": args.user_id,
                "granted": args.credits,
                "available": after.available,
                "held": after.held,
            }
        )
    )
    return 0


def _serve(settings: ApiSettings, args: argparse.Namespace) -> int:
    import uvicorn

    from api_stub.app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
    )
    return 0


def _loop(settings: ApiSettings, args: argparse.Namespace, kind: str) -> int:
    from prometheus_client import start_http_server

    from api_stub.dispatcher import Dispatcher
    from api_stub.reconciler import Reconciler
    from api_stub.services import Services, master_key

    svc = Services.from_settings(settings)
    if kind == "dispatcher":
        runner: Dispatcher | Reconciler = Dispatcher(
            db=svc.db,
            runpod=svc.runpod,
            storage=svc.storage,
            settings=settings,
            master_key=master_key(settings),
            metrics=svc.metrics,
        )
    else:
        runner = Reconciler(db=svc.db, runpod=svc.runpod, settings=settings, metrics=svc.metrics)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=settings.host, registry=svc.metrics.registry)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        log.info(f"{kind} stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    try:
        if args.once:
            runner.run_once()
        else:
            runner.run_forever(stop)
    finally:
        runner.close()
        svc.close()
    return 0


def _dispatcher(settings: ApiSettings, args: argparse.Namespace) -> int:
    return _loop(settings, args, "dispatcher")


def _reconciler(settings: ApiSettings, args: argparse.Namespace) -> int:
    return _loop(settings, args, "reconciler")


def _openapi(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.openapi import openapi_document

    print(json.dumps(openapi_document(settings), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
