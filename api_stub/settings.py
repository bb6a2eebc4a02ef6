"""Every environment variable the control plane reads, parsed once into one typed object.

Nothing else in api_stub reads os.environ: build `ApiSettings.from_env()` at start-up and pass it
down. Field descriptions feed the README's configuration table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from handler.params import PARAM_SPECS
from handler.settings import env_values

ALL_TYPES = tuple(PARAM_SPECS)  # the worker's processing types: one source of truth
# Content types a user may upload; `image/svg+xml` is left out on purpose (it can carry script).
DEFAULT_UPLOAD_TYPES = ("image/png", "image/jpeg", "image/webp")


def _split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _split(value: object) -> object:
    if isinstance(value, str):
        return _split_csv(value)
    return value


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # --- Database ------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///./simplypng.db",
        description="postgresql://... for Postgres, sqlite:///path.db for the embedded default.",
    )
    db_pool_size: int = Field(
        10, ge=1, le=200, description="Most Postgres connections per process."
    )

    # --- Runpod --------------------------------------------------------------------------
    runpod_endpoint_url: str = Field(
        "http://127.0.0.1:8000",
        description="Endpoint base URL: https://api.runpod.ai/v2/<endpoint_id>, or a local "
        "`--rp_serve_api` worker at http://127.0.0.1:<port>.",
    )
    runpod_api_key: SecretStr | None = Field(
        None, description="Runpod API key, sent as a Bearer token."
    )
    runpod_status_method: Literal["GET", "POST"] = Field(
        "GET", description="HTTP method for /status (the local --rp_serve_api wants POST)."
    )
    runpod_timeout_s: float = Field(30.0, gt=0, description="Timeout for /run and /cancel calls.")
    runpod_status_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Timeout for /status (raise it for the local API, which runs the job inside "
        "the /status call).",
    )
    runpod_ttl_s: int = Field(
        86_400, ge=10, description="Runpod policy.ttl: how long a job may wait in Runpod's queue."
    )

    # --- Callbacks -----------------------------------------------------------------------
    public_base_url: str = Field(
        "http://127.0.0.1:8080", description="Base URL at which workers and users reach this API."
    )
    webhook_url: str | None = Field(
        None,
        description="Callback URL given to workers (default PUBLIC_BASE_URL/api/webhooks/runpod).",
    )
    callback_master_key: SecretStr | None = Field(
        None,
        description="Secret from which per-job callback keys are derived: "
        'HMAC-SHA256(master, "callback\\0" + job_id); '
        "at least 32 characters. Required by the dispatcher and the webhook receiver.",
    )
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Extra Standard Webhooks secrets (whsec_...), comma separated; any one "
        "verifies, so keys can be rotated.",
    )
    x_signature_enabled: bool = Field(
        False,
        description="Also require the guideline's X-Signature (base64 HMAC of the body with the "
        "per-job key).",
    )

    # --- Jobs, credits and limits -------------------------------------------------------
    job_costs: dict[str, int] = Field(
        default_factory=lambda: dict.fromkeys(ALL_TYPES, 1),
        description="Credits per input per type, e.g. `bg_remove=1,upscale_2k=2`; missing "
        "types cost 1.",
    )
    job_timeout_s: int = Field(180, ge=1, le=3600, description="Default timeout_s of a job.")
    max_inputs: int = Field(8, ge=1, le=64, description="Most inputs per job.")
    batch_max_jobs: int = Field(50, ge=1, le=1000, description="Most jobs in one batch request.")
    allow_http_inputs: bool = Field(
        False, description="Accept plain http:// input URLs (https:// is always accepted)."
    )
    rate_limit_burst: float = Field(
        20.0, gt=0, description="Token-bucket capacity per user (job-creating requests)."
    )
    rate_limit_per_s: float = Field(
        2.0, gt=0, description="Token-bucket refill rate per user, tokens per second."
    )

    # --- Dispatcher ----------------------------------------------------------------------
    max_inflight: int = Field(
        16, ge=1, description="Most jobs dispatched or running at once, across all dispatchers."
    )
    dispatch_batch: int = Field(8, ge=1, le=500, description="Jobs claimed per dispatcher pass.")
    dispatch_attempts: int = Field(
        3, ge=1, le=10, description="Attempts for /run on 429, 5xx or network errors."
    )
    dispatch_backoff_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles each attempt, with full jitter."
    )
    dispatch_max_claims: int = Field(
        5, ge=1, description="Claims after which a job whose dispatchers keep dying is FAILED."
    )
    lease_s: float = Field(
        60.0, gt=0, description="Claim lease; a dead dispatcher's jobs re-queue after it."
    )
    poll_s: float = Field(
        2.0, gt=0, description="Fallback poll interval of dispatcher and reconciler."
    )

    # --- Reconciler ----------------------------------------------------------------------
    reconcile_after_s: float = Field(
        120.0,
        ge=0,
        description="A RUNNING job without a callback is checked at /status after this.",
    )
    reconcile_every_s: float = Field(
        30.0, gt=0, description="Interval between /status checks of the same job."
    )
    reconcile_concurrency: int = Field(
        8, ge=1, le=64, description="Jobs the reconciler checks at /status at once."
    )
    lost_after_s: float = Field(
        1800.0,
        gt=0,
        description="A RUNNING job Runpod no longer knows is FAILED this long after it started "
        "(Runpod keeps /run results 30 minutes).",
    )

    # --- Storage -------------------------------------------------------------------------
    storage: Literal["local", "s3"] = Field(
        "local", description="local: files served by this app with HMAC-signed URLs; s3: S3."
    )
    local_storage_dir: Path = Field(
        Path("./data/storage"), description="Folder of the local storage provider."
    )
    storage_signing_key: SecretStr | None = Field(
        None,
        description="HMAC key of local signed URLs (default: derived from CALLBACK_MASTER_KEY).",
    )
    s3_bucket: str | None = Field(None, description="Bucket for uploads and outputs.")
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint used by this service and in workers' input URLs (AWS if unset).",
    )
    s3_public_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint in the upload and download URLs users get, when they reach S3 "
        "at another address than workers do (default S3_ENDPOINT_URL).",
    )
    s3_region: str | None = Field(None, description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="S3 addressing style (path for MinIO and moto)."
    )
    upload_ttl_s: int = Field(600, ge=300, le=600, description="Presigned upload lifetime (s).")
    upload_max_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest accepted upload in bytes."
    )
    upload_content_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_UPLOAD_TYPES),
        description="Accepted upload content types, comma separated.",
    )
    download_ttl_s: int = Field(
        300, ge=10, le=3600, description="Lifetime of presigned output GET URLs (s)."
    )
    output_max_bytes: int = Field(
        200 * 1024 * 1024, gt=0, description="Largest output a worker may PUT to local storage."
    )

    # --- Service -------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Listen address of `serve`.")
    port: int = Field(8080, ge=1, le=65535, description="Listen port of `serve`.")
    metrics_window_s: int = Field(
        3600, ge=60, description="Window of the job success ratio gauge (s)."
    )
    log_level: str = Field("INFO", description="Log level.")

    @field_validator("webhook_secrets", "upload_content_types", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("job_costs", mode="before")
    @classmethod
    def _parse_costs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        costs: dict[str, str] = {}
        for part in _split_csv(value):
            name, sep, cost = part.partition("=")
            if not sep:
                raise ValueError(f"JOB_COSTS entry {part!r} is not type=credits")
            costs[name.strip()] = cost.strip()
        return costs

    @field_validator("job_costs")
    @classmethod
    def _known_costs(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(ALL_TYPES))
        if unknown:
            raise ValueError(f"JOB_COSTS names unknown types: {', '.join(unknown)}")
        if any(cost < 0 for cost in value.values()):
            raise ValueError("JOB_COSTS must not be negative")
        return {**dict.fromkeys(ALL_TYPES, 1), **value}

    @field_validator("callback_master_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("CALLBACK_MASTER_KEY must be at least 32 characters")
        return value

    @field_validator("runpod_endpoint_url", "public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE=s3 needs S3_BUCKET")
        if self.lease_s <= self.runpod_timeout_s:
            # The lease is renewed between /run attempts, but one attempt must fit inside it.
            raise ValueError("LEASE_S must be longer than RUNPOD_TIMEOUT_S")
        return self

    @property
    def callback_url(self) -> str:
        return self.webhook_url or f"{self.public_base_url}/api/webhooks/runpod"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        return cls.model_validate(env_values(cls, environ))
