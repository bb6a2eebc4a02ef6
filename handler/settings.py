"""Every environment variable the worker reads, parsed once into one typed object.

Nothing reads os.environ elsewhere: build a Settings with `Settings.from_env()` at start-up
and pass it down. Field descriptions feed the README's configuration table.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from handler.params import Segmenter

REPO_ROOT = Path(__file__).resolve().parent.parent
ALL_TYPES = (
    "bg_remove",
    "cutout_subject",
    "object_remove",
    "white_bg_ecomm",
    "upscale_2k",
    "jpeg_to_png",
)


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # --- ComfyUI -------------------------------------------------------------------------
    comfyui_url: str | None = Field(
        None,
        description="Attach to an already running ComfyUI at this URL instead of starting one.",
    )
    comfyui_dir: Path | None = Field(
        None, description="ComfyUI checkout to start as a child process (main.py)."
    )
    comfyui_python: str = Field(
        default_factory=lambda: sys.executable,
        description="Python interpreter that runs ComfyUI's main.py (default: the worker's own).",
    )
    comfyui_port: int = Field(8188, ge=1, le=65535, description="Port for the child ComfyUI.")
    comfyui_extra_args: list[str] = Field(
        default_factory=list,
        description="Extra ComfyUI flags, comma separated (for example --cpu).",
    )
    comfyui_start_timeout_s: float = Field(
        180.0, gt=0, description="Deadline for ComfyUI to answer /system_stats at start."
    )
    comfyui_idle_timeout_s: float = Field(
        30.0, gt=0, description="Websocket silence after which the job is reconciled via /history."
    )
    comfyui_input_dir: Path | None = Field(
        None, description="ComfyUI input folder (default COMFYUI_DIR/input); job files are removed."
    )
    comfyui_output_dir: Path | None = Field(
        None,
        description="ComfyUI output folder (default COMFYUI_DIR/output); job files are removed.",
    )
    comfyui_handover: Literal["auto", "file", "http"] = Field(
        "auto",
        description="How pixels reach ComfyUI: raw files in its folders (file), HTTP upload and "
        "/view (http), or file whenever the folders are known (auto).",
    )
    comfyui_max_upload_mb: float = Field(
        100.0,
        gt=0,
        description="ComfyUI's --max-upload-size; larger HTTP hand-overs are sent in parts.",
    )
    workflows_dir: Path = Field(REPO_ROOT / "workflows", description="Workflow JSON folder.")
    enabled_types: list[str] = Field(
        default_factory=lambda: list(ALL_TYPES),
        description="Processing types this worker serves and validates at start, comma separated.",
    )
    models_lock: Path = Field(REPO_ROOT / "models.lock", description="Path to models.lock.")
    segmenters: list[Segmenter] = Field(
        default_factory=lambda: list(get_args(Segmenter)),
        description="Segmenters this worker serves, comma separated; a job asking for another "
        "fails with MODEL_UNAVAILABLE before any work (a CPU worker of the lite tier: u2netp).",
    )

    # --- Inputs --------------------------------------------------------------------------
    allow_http_inputs: bool = Field(False, description="Accept plain http:// input URLs.")
    url_allowlist: list[str] = Field(
        default_factory=list,
        description="CIDRs that may be fetched although private/loopback (e.g. 127.0.0.0/8).",
    )
    max_inputs: int = Field(8, ge=1, le=64, description="Most inputs one job may carry.")
    max_input_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Byte cap for one downloaded input."
    )
    max_input_pixels: int = Field(
        36_000_000, gt=0, description="Pixel cap for one decoded input (decompression bombs)."
    )
    fetch_connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout for inputs.")
    fetch_read_timeout_s: float = Field(30.0, gt=0, description="Read timeout for inputs.")
    fetch_max_attempts: int = Field(3, ge=1, le=10, description="Attempts on 5xx/timeouts.")

    # --- Storage -------------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (AWS if unset; Wasabi, R2, Supabase S3, MinIO otherwise)."
    )
    s3_region: str | None = Field(None, description="S3 region name.")
    s3_access_key_id: SecretStr | None = Field(
        None, description="S3 access key (falls back to boto3's usual chain)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="S3 addressing style (path for MinIO)."
    )
    upload_max_attempts: int = Field(4, ge=1, le=10, description="Attempts per output upload.")
    upload_timeout_s: float = Field(60.0, gt=0, description="Timeout per output upload.")
    png_encoder: Literal["fpng", "pillow-fast", "pillow"] = Field(
        "fpng", description="PNG encoder: fpng, pillow-fast (zlib level 1) or pillow (6)."
    )

    # --- Callback ------------------------------------------------------------------------
    callback_secret: SecretStr | None = Field(
        None, description="Fallback callback key when auth.callback_hmac is missing or short."
    )
    callback_timeout_s: float = Field(10.0, gt=0, description="Timeout per callback attempt.")
    callback_max_attempts: int = Field(5, ge=1, le=20, description="Callback delivery attempts.")
    callback_backoff_s: float = Field(0.5, ge=0, description="First callback retry delay.")

    # --- Runtime -------------------------------------------------------------------------
    concurrency: int = Field(
        2, ge=1, le=16, description="Jobs one worker runs at once (I/O overlaps GPU work)."
    )
    max_timeout_s: int = Field(3600, ge=1, description="Largest timeout_s a payload may ask for.")
    batch_max_pixels: int = Field(
        16_777_216,
        ge=1,
        description="Most pixels of same-size inputs sent to ComfyUI as one batch (one model "
        "pass); 1 sends every input alone.",
    )
    log_level: str = Field("INFO", description="Log level.")
    require_gpu: bool = Field(
        False, description="Fail at start unless nvidia-smi reports a GPU (set in the image)."
    )
    runpod_log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field(
        "INFO",
        description="runpod SDK log level; at DEBUG the SDK logs whole job inputs (keys, URLs).",
    )
    runpod_webhook_post_output: str | None = Field(
        None, description="Set by Runpod on its workers; progress updates are sent only then."
    )
    boot_epoch: float | None = Field(
        None,
        description="Container start time (unix s), set by scripts/start.sh for cold-start logs.",
    )
    min_driver_version: int = Field(
        580, ge=0, description="Oldest NVIDIA driver (major) the GPU check accepts; 580 = CUDA 13."
    )
    warmup: bool = Field(True, description="Run one warm-up prompt per enabled type at start.")

    @field_validator(
        "comfyui_extra_args", "enabled_types", "url_allowlist", "segmenters", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("enabled_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALL_TYPES))
        if unknown:
            raise ValueError(f"unknown processing types: {', '.join(unknown)}")
        return value

    @field_validator("segmenters")
    @classmethod
    def _some_segmenter(cls, value: list[Segmenter]) -> list[Segmenter]:
        if not value:
            raise ValueError("SEGMENTERS must name at least one of birefnet, u2netp")
        return list(dict.fromkeys(value))

    @field_validator("callback_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        secret = value.get_secret_value()
        if secret.startswith("whsec_"):
            try:
                key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("CALLBACK_SECRET: whsec_ secrets must be base64") from None
        else:
            key = secret.encode()
        if len(key) < 32:
            raise ValueError("CALLBACK_SECRET must hold at least 32 bytes")
        return value

    @field_validator("url_allowlist")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls.model_validate(env_values(cls, environ))


def env_values(model: type[BaseModel], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The model's fields found in the environment (FIELD_NAME upper-cased; empty = unset)."""
    env = os.environ if environ is None else environ
    return {
        name: env[name.upper()]
        for name in model.model_fields
        if name.upper() in env and env[name.upper()] != ""
    }
