"""The job contract: payload in, callback body / handler result out.

`python -m handler.contract` writes `schema/contract.schema.json`, which the BFF validates
against; a test fails when the committed file is stale.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from handler.errors import ErrorCode, JobError
from handler.settings import ALL_TYPES, REPO_ROOT

JobType = Literal[
    "bg_remove", "cutout_subject", "object_remove", "white_bg_ecomm", "upscale_2k", "jpeg_to_png"
]
assert set(JobType.__args__) == set(ALL_TYPES)  # type: ignore[attr-defined]

MAX_URL_CHARS = 16 * 1024 * 1024  # data: URIs may carry an image inline (Runpod caps at 10 MB)
SCHEMA_PATH = REPO_ROOT / "schema" / "contract.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Input(_Model):
    # strict: a payload with "60" or true for a number is refused, not coerced.
    model_config = ConfigDict(extra="forbid", strict=True)


class InputRef(_Input):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="https:// (http:// if allowed), s3://bucket/key or a data: URI.",
    )


class OutputTarget(_Input):
    put_url: str = Field(min_length=1, description="Presigned PUT URL for this output.")
    url: str = Field(min_length=1, description="Public or GET URL reported for this output.")


class CallbackAuth(_Input):
    callback_hmac: str | None = Field(
        None, description="Base64 per-job callback key (>= 32 bytes decoded)."
    )


class JobPayload(_Input):
    """Runpod `input` for one SimplyPNG job."""

    job_id: str = Field(description="UUIDv4 chosen by the control plane.")
    type: JobType
    params: dict[str, Any] = Field(default_factory=dict, description="Versioned, per type.")
    inputs: list[InputRef] = Field(min_length=1, max_length=64)
    output_prefix: str | None = Field(
        None, description="s3://bucket/prefix/ or an https:// signed prefix (query kept)."
    )
    outputs: list[OutputTarget] | None = Field(
        None, max_length=64, description="Presigned PUT URLs, one per output."
    )
    webhook_url: str | None = Field(None, description="Where the signed callback is POSTed.")
    auth: CallbackAuth | None = None
    timeout_s: int = Field(180, ge=1, le=86_400)

    @field_validator("job_id")
    @classmethod
    def _uuid4(cls, value: str) -> str:
        try:
            parsed = uuid.UUID(value)
        except (ValueError, AttributeError, TypeError):
            raise ValueError("job_id must be a UUIDv4") from None
        if parsed.version != 4 or str(parsed) != value.lower():
            raise ValueError("job_id must be a UUIDv4 in canonical form")
        return str(parsed)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, ValueError):
            raise ValueError("webhook_url must be an http(s) URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("webhook_url must be an http(s) URL")
        return value


class OutputFile(_Model):
    url: str
    width: int
    height: int
    bytes: int
    sha256: str
    format: Literal["png", "webp", "jpeg"]


class ModelUsed(_Model):
    name: str
    version: str
    sha256: str | None = None


class JobMetrics(_Model):
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="Seconds per stage: download, queue, execute, encode, upload, callback.",
    )
    gpu_seconds: float = 0.0
    comfyui_version: str | None = None
    worker_version: str
    models: list[ModelUsed] = Field(default_factory=list)


class ErrorDetails(_Model):
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str | None = None
    message: str | None = None
    field: str | None = None


class JobResult(_Model):
    """The callback body, and also the handler's return value to Runpod."""

    job_id: str | None
    status: Literal["SUCCEEDED", "FAILED"]
    outputs: list[OutputFile] = Field(default_factory=list)
    error: str | None = None
    error_code: ErrorCode | None = None
    error_details: ErrorDetails | None = None
    metrics: JobMetrics


def parse_payload(raw: object, *, max_inputs: int, max_timeout_s: int) -> JobPayload:
    """Validate a Runpod `input`; every failure is INVALID_PAYLOAD naming the field."""
    if not isinstance(raw, dict):
        raise JobError(ErrorCode.INVALID_PAYLOAD, "input must be a JSON object")
    try:
        payload = JobPayload.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "input"
        code = ErrorCode.INVALID_PAYLOAD
        raise JobError(code, f"{field}: {first['msg']}", {"field": field}) from None
    if len(payload.inputs) > max_inputs:
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            f"inputs: at most {max_inputs} inputs per job, got {len(payload.inputs)}",
            {"field": "inputs"},
        )
    if payload.timeout_s > max_timeout_s:
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            f"timeout_s: must be between 1 and {max_timeout_s}",
            {"field": "timeout_s"},
        )
    if payload.outputs is not None and len(payload.outputs) < len(payload.inputs):
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            f"outputs: {len(payload.inputs)} inputs need {len(payload.inputs)} output targets, "
            f"got {len(payload.outputs)}",
            {"field": "outputs"},
        )
    if payload.output_prefix is None and payload.outputs is None:
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            "output_prefix: give output_prefix or outputs",
            {"field": "output_prefix"},
        )
    return payload


def json_schema() -> dict[str, Any]:
    """One document holding the payload, result and every param spec."""
    from handler.params import PARAM_SPECS

    defs: dict[str, Any] = {}
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "SimplyPNG worker contract",
        "$defs": defs,
        "properties": {},
    }
    for name, model in (("JobPayload", JobPayload), ("JobResult", JobResult)):
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    params: dict[str, Any] = {}
    for job_type, versions in PARAM_SPECS.items():
        for version, spec in versions.items():
            schema = spec.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(schema.pop("$defs", {}))
            key = spec.__name__
            defs[key] = schema
            params.setdefault(job_type, {})[str(version)] = {"$ref": f"#/$defs/{key}"}
    doc["x-params"] = params
    return doc


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    Path(SCHEMA_PATH).write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
