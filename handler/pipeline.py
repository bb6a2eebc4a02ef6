"""One job, top to bottom: validate -> fetch inputs -> run workflow -> store outputs -> callback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pydantic import BaseModel

from handler import __version__
from handler.batching import batches
from handler.callback import deliver, resolve_key
from handler.comfy.client import ComfyClient
from handler.contract import (
    ErrorDetails,
    JobMetrics,
    JobPayload,
    JobResult,
    ModelUsed,
    OutputFile,
    parse_payload,
)
from handler.errors import ErrorCode, JobError, classify_node_error
from handler.handover import Handover, make_handover
from handler.inputs import load_input
from handler.logs import bind_job_id
from handler.models_lock import ModelsLock
from handler.outputs import EncodedImage, OutputFormat, encode_output
from handler.params import validate_params
from handler.settings import Settings
from handler.storage import OutputStore, S3ClientFactory, make_store
from handler.timing import StageTimer
from handler.workflows import Binding, build_prompt, output_node_ids

log = logging.getLogger(__name__)

# Called with (stage, percent done) as a job advances (runpod progress updates).
ReportProgress = Callable[[str, float], object]


@dataclass
class WorkerContext:
    """Everything a job needs, built once at start-up."""

    settings: Settings
    comfy: ComfyClient
    registry: dict[str, Binding]
    http: httpx.AsyncClient  # guarded: inputs and output uploads
    callback_http: httpx.AsyncClient  # the webhook URL comes from the trusted control plane
    models: ModelsLock
    s3_inputs: S3ClientFactory
    s3_outputs: S3ClientFactory
    comfyui_version: str | None = None
    input_dir: Path | None = None
    output_dir: Path | None = None
    handover: Handover | None = None  # default: from settings and the folders above

    def __post_init__(self) -> None:
        if self.handover is None:
            self.handover = make_handover(
                self.settings.comfyui_handover,
                self.comfy,
                self.input_dir,
                self.output_dir,
                int(self.settings.comfyui_max_upload_mb * 1024 * 1024),
            )


@dataclass
class _Job:
    payload: JobPayload
    params: BaseModel
    binding: Binding
    key: bytes
    store: OutputStore
    deadline: float
    # Each run gets its own ComfyUI folder: a re-run of the same job_id must not hit
    # ComfyUI's cache of a previous run whose files were already cleaned up.
    run_folder: str


async def run_job(ctx: WorkerContext, raw: object, progress: ReportProgress | None = None) -> dict:
    """Run one job and return the callback body (also the Runpod result). Never raises."""
    report = progress or (lambda stage, pct: None)
    timer = StageTimer()
    job: _Job | None = None
    outputs: list[OutputFile] = []
    bind_job_id(_job_id(raw))
    try:
        job = _prepare(ctx, raw)
        async with _deadline(job):
            report("download", 0)
            with timer.stage("download"):
                images, mask = await _fetch_inputs(ctx, job)
            pixels = [np.asarray(image) for image in images]
            shapes = [(p.shape[0], p.shape[1], p.shape[2]) for p in pixels]
            done = 0
            placed: list[tuple[int, OutputFile]] = []  # (input index, file)
            for group in batches(shapes, ctx.settings.batch_max_pixels):
                files = await _process_batch(ctx, job, group, done, pixels, mask, timer, report)
                done += len(group)
                report("upload", 100.0 * done / len(images))
                with timer.stage("upload"):
                    for index, name, encoded in files:
                        url = await job.store.put(name, encoded.data, encoded.content_type)
                        placed.append((index, _output_file(url, encoded)))
            # Outputs in input order, whatever order the batches ran in (the sort is stable).
            outputs = [file for _, file in sorted(placed, key=lambda item: item[0])]
        result = _result(ctx, job, raw, "SUCCEEDED", outputs, timer)
    except JobError as exc:
        result = _result(ctx, job, raw, "FAILED", [], timer, error=exc)
    except asyncio.CancelledError:
        _uncancel()
        error = JobError(ErrorCode.CANCELLED, "the job was cancelled")
        result = _result(ctx, job, raw, "FAILED", [], timer, error=error)
    except Exception:
        log.exception("unexpected worker error")
        error = JobError(ErrorCode.INTERNAL_ERROR, "unexpected worker error")
        result = _result(ctx, job, raw, "FAILED", [], timer, error=error)
    finally:
        if job is not None:
            _cleanup(ctx, job.run_folder)
    report("callback", 100)
    try:
        await _send_callback(ctx, job, raw, result, timer)
    except asyncio.CancelledError:
        # A cancel during delivery: the shielded delivery finishes; the result stands.
        _uncancel()
    body = result.model_dump(mode="json")
    log.info(
        "job finished",
        extra={
            "status": result.status,
            "error_code": result.error_code,
            "timings": timer.stages,
            "gpu_seconds": result.metrics.gpu_seconds,
            "comfyui_version": result.metrics.comfyui_version,
            "worker_version": result.metrics.worker_version,
        },
    )
    return body


@contextlib.asynccontextmanager
async def _deadline(job: _Job) -> AsyncIterator[None]:
    """timeout_s covers the whole job: downloads, ComfyUI, encoding and uploads."""
    try:
        async with asyncio.timeout(_remaining(job)):
            yield
    except TimeoutError:
        raise JobError(
            ErrorCode.TIMEOUT, f"the job ran past timeout_s={job.payload.timeout_s}"
        ) from None


def _prepare(ctx: WorkerContext, raw: object) -> _Job:
    settings = ctx.settings
    payload = parse_payload(
        raw, max_inputs=settings.max_inputs, max_timeout_s=settings.max_timeout_s
    )
    # The key is checked before any work: an unsigned callback is never sent.
    key = resolve_key(payload.auth.callback_hmac if payload.auth else None, settings)
    params = validate_params(payload.type, payload.params)
    binding = ctx.registry.get(payload.type)
    if binding is None:
        raise JobError(
            ErrorCode.INVALID_PAYLOAD,
            f"type: {payload.type} is not enabled on this worker",
            {"field": "type"},
        )
    segmenter = binding.model_choices(params).get("segmenter")
    if segmenter is not None and segmenter not in settings.segmenters:
        raise JobError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"params.segmenter: {segmenter} is not served by this worker "
            f"(it serves {', '.join(settings.segmenters)})",
            {"field": "params.segmenter"},
        )
    # A bad output target fails here, before any work.
    store = make_store(payload, settings, ctx.http, s3_client_factory=ctx.s3_outputs)
    deadline = time.monotonic() + payload.timeout_s
    run_folder = f"simplypng/{payload.job_id}-{uuid.uuid4().hex[:8]}"
    return _Job(payload, params, binding, key, store, deadline, run_folder)


async def _fetch_image(ctx: WorkerContext, url: str) -> Image.Image:
    decoded = await load_input(url, ctx.settings, http=ctx.http, s3_client_factory=ctx.s3_inputs)
    return decoded.image


async def _fetch_inputs(
    ctx: WorkerContext, job: _Job
) -> tuple[list[Image.Image], Image.Image | None]:
    urls = [item.url for item in job.payload.inputs]
    mask_url = getattr(job.params, "mask_url", None)
    if mask_url:
        urls.append(mask_url)
    images = await asyncio.gather(*(_fetch_image(ctx, url) for url in urls))
    if mask_url:
        return list(images[:-1]), images[-1]
    return list(images), None


async def _process_batch(
    ctx: WorkerContext,
    job: _Job,
    group: list[int],
    done: int,
    pixels: list[np.ndarray],
    mask: Image.Image | None,
    timer: StageTimer,
    report: ReportProgress,
) -> list[tuple[int, str, EncodedImage]]:
    """One prompt for the inputs in `group` (same shape): (input index, name, file) each.

    `done` inputs were processed before this batch (for progress).
    """
    subfolder = job.run_folder
    count = len(job.payload.inputs)
    first = group[0]
    handover = ctx.handover
    assert handover is not None  # set in __post_init__
    with timer.stage("queue"):
        # Decoded once in the worker; ComfyUI gets the raw pixels (no PNG in between). A batch
        # is one BxHxWxC file, which the loader gives ComfyUI as one IMAGE batch.
        batch = pixels[first] if len(group) == 1 else np.stack([pixels[i] for i in group])
        image_ref = await handover.send(batch, subfolder, f"in_{first:02d}.npy")
        mask_ref = None
        if mask is not None:
            mask_ref = await handover.send(np.asarray(mask), subfolder, f"mask_{first:02d}.npy")
    prompt = build_prompt(
        job.binding,
        job.params,
        image=image_ref,
        mask=mask_ref,
        output_prefix=f"{subfolder}/out_{first:02d}",
    )

    def on_progress(event: Any) -> None:
        fraction = float(getattr(event, "fraction", 0.0) or 0.0)
        report("execute", 100.0 * (done + fraction * len(group)) / count)

    try:
        result = await ctx.comfy.run_prompt(
            prompt, timeout_s=_remaining(job), on_progress=on_progress
        )
    except JobError as exc:
        raise classify_node_error(exc) from None
    timer.add("queue", result.timings.get("queue_s", 0.0))
    timer.add("execute", result.timings.get("execute_s", 0.0))
    refs = [
        ref for node in output_node_ids(job.binding, prompt) for ref in result.outputs.get(node, [])
    ]
    if not refs:
        raise JobError(ErrorCode.NODE_ERROR, "the workflow produced no output image")
    if len(group) > 1 and len(refs) != len(group):
        raise JobError(
            ErrorCode.NODE_ERROR,
            f"the workflow returned {len(refs)} images for a batch of {len(group)} inputs",
        )
    files: list[tuple[int, str, EncodedImage]] = []
    fmt: OutputFormat = getattr(job.params, "output_format", "png")
    for k, ref in enumerate(refs):
        with timer.stage("collect"):
            data = await handover.fetch(ref, subfolder)
        with timer.stage("encode"):
            encoded = await asyncio.to_thread(encode_output, data, fmt, ctx.settings.png_encoder)
        if len(group) > 1:
            index, name = group[k], f"out_{group[k]:02d}"  # one output per input, in order
        else:
            index, name = first, f"out_{first:02d}" + ("" if len(refs) == 1 else f"_{k:02d}")
        files.append((index, f"{name}.{encoded.extension}", encoded))
    return files


def _output_file(url: str, encoded: EncodedImage) -> OutputFile:
    return OutputFile(
        url=url,
        width=encoded.width,
        height=encoded.height,
        bytes=len(encoded.data),
        sha256=encoded.sha256,
        format=encoded.format,
    )


def _remaining(job: _Job) -> float:
    remaining = job.deadline - time.monotonic()
    if remaining <= 0:
        raise JobError(ErrorCode.TIMEOUT, f"the job ran past timeout_s={job.payload.timeout_s}")
    return remaining


def _job_id(raw: object) -> str | None:
    """The raw payload's job_id when it is a UUID (invalid payloads echo nothing else)."""
    value = raw.get("job_id") if isinstance(raw, dict) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _result(
    ctx: WorkerContext,
    job: _Job | None,
    raw: object,
    status: str,
    outputs: list[OutputFile],
    timer: StageTimer,
    error: JobError | None = None,
) -> JobResult:
    models: list[ModelUsed] = []
    if job is not None:
        used = ctx.models.models_for(job.binding.models_for(job.params))
        models = [ModelUsed.model_validate(entry) for entry in used]
    details = None
    if error is not None and error.details:
        allowed = ErrorDetails.model_fields
        details = ErrorDetails(**{k: v for k, v in error.details.items() if k in allowed})
    return JobResult(
        job_id=job.payload.job_id if job else _job_id(raw),
        status=status,  # type: ignore[arg-type]
        outputs=outputs,
        error=error.message if error else None,
        error_code=error.code if error else None,
        error_details=details,
        metrics=JobMetrics(
            timings=dict(timer.stages),
            # ComfyUI's execution time is the GPU-bound part of a job.
            gpu_seconds=round(timer.stages.get("execute", 0.0), 4),
            comfyui_version=ctx.comfyui_version,
            worker_version=__version__,
            models=models,
        ),
    )


async def _send_callback(
    ctx: WorkerContext, job: _Job | None, raw: object, result: JobResult, timer: StageTimer
) -> None:
    url, key = _callback_target(ctx, job, raw)
    if url is None or key is None:
        return
    started = time.perf_counter()
    # The signed body must be the exact bytes sent; timings of the callback itself can't be in it.
    body = result.model_dump_json().encode()
    message_id = f"msg_{result.job_id or uuid.uuid4()}"
    report = await asyncio.shield(
        deliver(
            url, body, key, message_id=message_id, settings=ctx.settings, http=ctx.callback_http
        )
    )
    timer.add("callback", time.perf_counter() - started)
    if not report.delivered:
        log.warning(
            "callback not delivered; the result is still returned to Runpod",
            extra={
                "job_id": result.job_id,
                "attempts": report.attempts,
                "status": report.status_code,
            },
        )


def _callback_target(
    ctx: WorkerContext, job: _Job | None, raw: object
) -> tuple[str | None, bytes | None]:
    if job is not None:
        return job.payload.webhook_url, job.key
    # Invalid payloads still get a callback when the target and a key can be trusted enough.
    if not isinstance(raw, dict) or not isinstance(raw.get("webhook_url"), str):
        return None, None
    if _job_id(raw) is None:
        return None, None
    auth = raw.get("auth") if isinstance(raw.get("auth"), dict) else {}
    hmac_value = auth.get("callback_hmac") if isinstance(auth, dict) else None
    try:
        key = resolve_key(hmac_value if isinstance(hmac_value, str) else None, ctx.settings)
    except JobError:
        return None, None
    return raw["webhook_url"], key


def _cleanup(ctx: WorkerContext, run_folder: str) -> None:
    """Remove this run's files from ComfyUI's input and output folders."""
    for base in (ctx.input_dir, ctx.output_dir):
        if base is None:
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(base / run_folder)
