"""The whole control plane in one process, for tests, the load test and benchmarks.

API (uvicorn on loopback), N dispatcher threads and a reconciler thread, against a real
database, talking to a Runpod endpoint over HTTP (the fake one by default, or any URL, such as
a local `python -m handler --rp_serve_api` worker).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_stub.app import create_app
from api_stub.db import Database
from api_stub.db.migrate import migrate
from api_stub.dispatcher import Dispatcher
from api_stub.reconciler import Reconciler
from api_stub.services import Services, make_runpod, master_key
from api_stub.settings import ApiSettings
from api_stub.testing.fake_runpod import FakeRunpod
from api_stub.testing.server import LoopbackServer, bind_loopback


@dataclass
class Stack:
    settings: ApiSettings
    services: Services
    api: LoopbackServer
    fake: FakeRunpod | None
    fake_server: LoopbackServer | None
    dispatchers: list[Dispatcher] = field(default_factory=list)
    reconciler: Reconciler | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.url

    def resume(self) -> None:
        """Start the dispatcher and reconciler threads (once)."""
        for thread in self._threads:
            if thread.ident is None:
                thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=10)
        for dispatcher in self.dispatchers:
            dispatcher.close()
            dispatcher.runpod.close()
        if self.reconciler is not None:
            self.reconciler.close()
            self.reconciler.runpod.close()
        self.api.stop()
        if self.fake is not None:
            self.fake.close()
        if self.fake_server is not None:
            self.fake_server.stop()
        self.services.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_stack(
    *,
    database_url: str,
    storage_dir: Path,
    dispatchers: int = 2,
    reconciler: bool = True,
    fake: FakeRunpod | None = None,
    runpod_url: str | None = None,
    settings: dict[str, Any] | None = None,
    paused: bool = False,
) -> Stack:
    """Start everything; pass `runpod_url` to use a real endpoint instead of a fake.

    With `paused`, dispatchers and reconciler wait for `stack.resume()`, so a test can
    create and script jobs before any is dispatched.
    """
    fake_server = None
    if runpod_url is None:
        fake = fake or FakeRunpod()
        fake_server = LoopbackServer(fake.app).start()
        runpod_url = fake.url = fake_server.url
    else:
        fake = None
    sock = bind_loopback()
    host, port = sock.getsockname()[:2]
    values: dict[str, Any] = {
        "database_url": database_url,
        "runpod_endpoint_url": runpod_url,
        "public_base_url": f"http://{host}:{port}",
        "local_storage_dir": storage_dir,
        "callback_master_key": secrets.token_urlsafe(48),
        "allow_http_inputs": True,
        "poll_s": 0.2,
        "dispatch_backoff_s": 0.05,
        "rate_limit_burst": 1000,
        "rate_limit_per_s": 1000,
        "db_pool_size": 30,
        **(settings or {}),
    }
    config = ApiSettings.model_validate(values)
    db = Database(config.database_url, pool_size=config.db_pool_size)
    migrate(db)
    services = Services.from_settings(config, db=db)
    api = LoopbackServer(create_app(config, services=services), sock=sock).start()
    stack = Stack(config, services, api, fake, fake_server)
    for index in range(dispatchers):
        dispatcher = Dispatcher(
            db=db,
            runpod=make_runpod(config),
            storage=services.storage,
            settings=config,
            master_key=master_key(config),
            metrics=services.metrics,
            owner=f"dispatcher-{index}",
        )
        stack.dispatchers.append(dispatcher)
        stack._threads.append(
            threading.Thread(target=dispatcher.run_forever, args=(stack._stop,), daemon=True)
        )
    if reconciler:
        stack.reconciler = Reconciler(
            db=db, runpod=make_runpod(config), settings=config, metrics=services.metrics
        )
        stack._threads.append(
            threading.Thread(target=stack.reconciler.run_forever, args=(stack._stop,), daemon=True)
        )
    if not paused:
        stack.resume()
    return stack
