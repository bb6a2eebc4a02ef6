"""Request and response bodies of the public API (also the source of the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from handler.contract import JobType, OutputFile

MAX_URL_CHARS = 4096


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Model):
    """One input image: an https URL, or the key of one of your uploads."""

    url: str | None = Field(None, min_length=1, max_length=MAX_URL_CHARS)
    key: str | None = Field(
        None, min_length=1, max_length=512, description="From POST /api/uploads."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSpec:
        if (self.url is None) == (self.key is None):
            raise ValueError("give exactly one of url or key")
        return self


class CreateJob(_Model):
    type: JobType
    params: dict[str, Any] = Field(
        default_factory=dict, description="Versioned per type (params.v, default 1)."
    )
    inputs: list[InputSpec] = Field(min_length=1, max_length=64)
    timeout_s: int | None = Field(None, ge=1, le=3600, description="Worker deadline in seconds.")


class CreateBatch(_Model):
    jobs: list[CreateJob] = Field(min_length=1, description="Created all together or not at all.")


class ErrorBody(_Model):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(_Model):
    error: ErrorBody


class OutputView(OutputFile):
    url: str = Field(description="Presigned GET URL, valid for DOWNLOAD_TTL_S seconds.")


class Timings(_Model):
    created_at: float = Field(description="Unix seconds; the job was QUEUED.")
    dispatched_at: float | None = None
    running_at: float | None = None
    finished_at: float | None = None
    queue_s: float | None = Field(None, description="QUEUED to RUNNING.")
    run_s: float | None = Field(None, description="RUNNING to finished.")
    total_s: float | None = Field(None, description="QUEUED to finished.")
    worker: dict[str, float] = Field(default_factory=dict, description="Worker stage timings.")


class ModelInfo(_Model):
    name: str
    version: str
    sha256: str | None = None


class JobView(_Model):
    id: str
    type: str
    status: Literal["QUEUED", "DISPATCHING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    params: dict[str, Any]
    inputs: int = Field(description="Number of inputs.")
    cost: int = Field(description="Credits held, then captured on success or released.")
    attempts: int
    batch_id: str | None = None
    outputs: list[OutputView] = Field(default_factory=list)
    error: ErrorBody | None = None
    timings: Timings
    gpu_seconds: float | None = None
    worker_version: str | None = None
    comfyui_version: str | None = None
    models: list[ModelInfo] = Field(default_factory=list)


class BatchView(_Model):
    batch_id: str
    jobs: list[JobView]


class UploadRequest(_Model):
    content_type: str = Field(description="One of UPLOAD_CONTENT_TYPES.")
    content_length: int | None = Field(None, ge=1, description="Planned size, checked early.")


class UploadView(_Model):
    url: str = Field(description="POST a multipart form here: every field, then `file`.")
    fields: dict[str, str]
    key: str
    expires_at: float
    max_bytes: int
    input: InputSpec = Field(description="Use this as a job input.")


class BalanceView(_Model):
    user_id: str
    available: int
    held: int


class CallbackAck(_Model):
    status: Literal["applied", "ignored", "duplicate"]
    job_status: str | None = None
