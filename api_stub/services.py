"""Wiring: every external dependency built once from ApiSettings, and closed together."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from api_stub import jobqueue
from api_stub.db import Database
from api_stub.metrics import Metrics
from api_stub.runpod_client import RunpodClient
from api_stub.settings import ApiSettings
from api_stub.signing import derive_key
from api_stub.storage import LocalStorage, S3Storage, Storage, make_s3_client
from api_stub.webhooks import CallbackVerifier


class ConfigError(RuntimeError):
    """A required setting is missing; the message names the environment variable."""


def master_key(settings: ApiSettings) -> str:
    if settings.callback_master_key is None:
        raise ConfigError("CALLBACK_MASTER_KEY is required (at least 32 random characters)")
    return settings.callback_master_key.get_secret_value()


def make_storage(settings: ApiSettings) -> Storage:
    if settings.storage == "s3":
        assert settings.s3_bucket is not None  # checked by ApiSettings

        def client(endpoint: str | None) -> object:
            return make_s3_client(
                endpoint_url=endpoint,
                region=settings.s3_region,
                access_key_id=_secret(settings.s3_access_key_id),
                secret_access_key=_secret(settings.s3_secret_access_key),
                addressing_style=settings.s3_addressing_style,
            )

        internal = client(settings.s3_endpoint_url)
        public = (
            client(settings.s3_public_endpoint_url) if settings.s3_public_endpoint_url else internal
        )
        return S3Storage(public, settings.s3_bucket, worker_client=internal)
    if settings.storage_signing_key is not None:
        key = settings.storage_signing_key.get_secret_value().encode()
    else:
        key = derive_key(master_key(settings), "storage", "local")
    return LocalStorage(
        settings.local_storage_dir, base_url=settings.public_base_url, signing_key=key
    )


def make_runpod(settings: ApiSettings) -> RunpodClient:
    return RunpodClient(
        settings.runpod_endpoint_url,
        api_key=_secret(settings.runpod_api_key),
        attempts=settings.dispatch_attempts,
        backoff_s=settings.dispatch_backoff_s,
        timeout_s=settings.runpod_timeout_s,
        status_timeout_s=settings.runpod_status_timeout_s,
        status_method=settings.runpod_status_method,
    )


@dataclass
class Services:
    settings: ApiSettings
    db: Database
    storage: Storage
    runpod: RunpodClient
    metrics: Metrics
    verifier: CallbackVerifier
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def from_settings(
        cls,
        settings: ApiSettings,
        *,
        db: Database | None = None,
        storage: Storage | None = None,
        runpod: RunpodClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Services:
        master = master_key(settings)
        database = db or Database(settings.database_url, pool_size=settings.db_pool_size)
        metrics = Metrics()
        metrics.add_db_gauges(
            lambda: jobqueue.counts_by_status(database),
            lambda: jobqueue.success_ratio(database, since=clock() - settings.metrics_window_s),
        )
        return cls(
            settings=settings,
            db=database,
            storage=storage or make_storage(settings),
            runpod=runpod or make_runpod(settings),
            metrics=metrics,
            verifier=CallbackVerifier(
                master_key=master,
                secrets=[s.get_secret_value() for s in settings.webhook_secrets],
                x_signature=settings.x_signature_enabled,
            ),
            clock=clock,
        )

    def close(self) -> None:
        self.runpod.close()
        self.db.close()


def _secret(value: object) -> str | None:
    return None if value is None else value.get_secret_value()  # type: ignore[attr-defined]
