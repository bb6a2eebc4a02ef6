"""Command line: `python -m api_stub <command>`.

migrate                         apply database migrations
create-user --credits N         create a user with credits; prints the API key once
grant --user-id ID --credits N  add credits to a user
serve                           run the API (uvicorn)
dispatcher [--once]             run a dispatcher process
reconciler [--once]             run a reconciler process
gen-secret                      print a random CALLBACK_MASTER_KEY and a whsec_ secret
openapi                         print the OpenAPI document
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence

from api_stub.settings import ApiSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api_stub", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations")
    user = sub.add_parser("create-user", help="create a user; prints the API key")
    user.add_argument("--credits", type=int, default=0)
    user.add_argument("--name", default="user")
    user.add_argument("--priority", type=int, default=0)
    grant = sub.add_parser("grant", help="add credits to a user")
    grant.add_argument("--user-id", required=True)
    grant.add_argument("--credits", type=int, required=True)
    serve = sub.add_parser("serve", help="run the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    for name in ("dispatcher", "reconciler"):
        worker = sub.add_parser(name, help=f"run a {name} process")
        worker.add_argument("--once", action="store_true", help="one pass, then exit")
        worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port")
    sub.add_parser("gen-secret", help="print fresh secrets")
    sub.add_parser("openapi", help="print the OpenAPI document")
    args = parser.parse_args(argv)

    if args.command == "gen-secret":
        print(f"CALLBACK_MASTER_KEY={secrets.token_urlsafe(48)}")
        print(f"WEBHOOK_SECRETS=whsec_{base64.b64encode(secrets.token_bytes(32)).decode()}")
        return 0

    settings = ApiSettings.from_env()
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
    }
    return handlers[args.command](settings, args)


def _migrate(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.db import Database
    from api_stub.db.migrate import migrate

    db = Database(settings.database_url, pool_size=1)
    try:
        applied = migrate(db)
    finally:
        db.close()
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _create_user(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub.auth import create_user
    from api_stub.db import Database

    db = Database(settings.database_url, pool_size=1)
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


def _grant(settings: ApiSettings, args: argparse.Namespace) -> int:
    from api_stub import credits
    from api_stub.db import Database

    db = Database(settings.database_url, pool_size=1)
    try:
        with db.transaction() as tx:
            if credits.balance(tx, args.user_id) is None:
                print(f"no such user: {args.user_id}", file=sys.stderr)
                return 1
            credits.grant(tx, args.user_id, args.credits, now=time.time(), note="cli grant")
    finally:
        db.close()
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
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
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
