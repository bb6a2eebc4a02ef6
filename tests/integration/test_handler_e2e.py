"""The real worker pipeline end to end: the ComfyUI test double running our node pack with tiny
models, an S3 protocol server (moto's standalone server), and a callback receiver that verifies
both signatures. One test per error code the worker can return."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from handler.comfy.client import ComfyClient
from handler.pipeline import run_job
from tests.fakes.comfy_double import Faults
from tests.fakes.http_server import LoopbackHTTPServer, Reply
from tests.fakes.s3_server import MotoS3
from tests.fakes.worker_stack import (
    callback_key,
    data_uri,
    payload,
    standard_webhooks_accept,
)

pytestmark = pytest.mark.torch


def product_photo(size: int = 96, *, exif: bool = True) -> bytes:
    """A red disc on light grey, as a JPEG carrying EXIF, ICC-free; subject is known."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    pixels = np.full((size, size, 3), 230, np.uint8)
    pixels[disc] = (200, 30, 30)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    extra = {}
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "SecretCam"  # Make
        tags[0x0131] = "GPS-leaking-editor"  # Software
        extra["exif"] = tags.tobytes()
    image.save(buffer, "JPEG", quality=95, **extra)
    return buffer.getvalue()


def png_bytes(image: Image.Image, text: str | None = None) -> bytes:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def product_job(
    bucket: str, job_type: str, params: dict, **fields: object
) -> tuple[dict, Image.Image]:
    """A job on the product photo (inline), writing to s3://bucket/o/; and its source image."""
    source = Image.open(io.BytesIO(product_photo(exif=False))).convert("RGB")
    _, key_b64 = callback_key()
    job = payload(
        job_type,
        data_uri(png_bytes(source)),
        params=params,
        output_prefix=f"s3://{bucket}/o/",
        callback_hmac=key_b64,
        **fields,  # type: ignore[arg-type]
    )
    return job, source


def small_job(
    job_type: str = "jpeg_to_png", *, size: int = 32, colour: object = "black", **fields: object
) -> dict:
    """A job on a small generated image, with a fresh per-job callback key."""
    _, key_b64 = callback_key()
    fields.setdefault("output_prefix", "s3://b/p/")
    source = data_uri(png_bytes(Image.new("RGB", (size, size), colour)))  # type: ignore[arg-type]
    return payload(job_type, source, callback_hmac=key_b64, **fields)  # type: ignore[arg-type]


def s3_object(s3: MotoS3, url: str) -> bytes:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def callbacks(web: LoopbackHTTPServer) -> list:
    return web.requests_for("POST", "/hook")


def assert_signed(request, key: bytes) -> dict:
    expected = base64.b64encode(hmac.new(key, request.body, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(request.headers["x-signature"], expected)
    assert standard_webhooks_accept(request.body, request.headers, key)
    return json.loads(request.body)


async def test_jpeg_to_png_stores_clean_png_and_signs_callback(ctx, s3, web, double) -> None:
    bucket = s3.create_bucket()
    web.route("GET", "/in/photo.jpg", Reply.ok(product_photo(), "image/jpeg"))
    key, key_b64 = callback_key()
    job = payload(
        "jpeg_to_png",
        web.url("/in/photo.jpg"),
        output_prefix=f"s3://{bucket}/output/user1/job/",
        webhook_url=web.url("/hook"),
        callback_hmac=key_b64,
    )
    result = await run_job(ctx, job)

    assert result["status"] == "SUCCEEDED", result
    assert result["error_code"] is None
    [output] = result["outputs"]
    assert output["url"] == f"s3://{bucket}/output/user1/job/out_00.png"
    data = s3_object(s3, output["url"])
    assert hashlib.sha256(data).hexdigest() == output["sha256"] and len(data) == output["bytes"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode == "RGBA" and image.size == (96, 96)
        assert image.getchannel("A").getextrema() == (255, 255)
        assert not image.info.get("exif") and "Comment" not in image.info
    assert b"SecretCam" not in data
    assert result["metrics"]["comfyui_version"] == "0.3.64-double"
    assert result["metrics"]["models"] == []  # core nodes only
    assert set(result["metrics"]["timings"]) >= {"download", "queue", "execute", "encode", "upload"}

    [request] = callbacks(web)
    body = assert_signed(request, key)
    assert body == result, "the callback body is the handler's return value"
    assert not list((double.input_dir / "simplypng").glob(f"{job['job_id']}*"))
    assert not (double.output_dir / "simplypng" / job["job_id"]).exists()


def _check(job_type: str, image: Image.Image, source: Image.Image) -> None:
    if job_type == "upscale_2k":
        assert max(image.size) == 2048
    elif job_type == "white_bg_ecomm":
        assert image.size == (2000, 2000) and image.mode == "RGB"
        corner = np.asarray(image)[:50, :50]
        assert (corner == 255).all()
    elif job_type == "object_remove":
        before = np.asarray(source.convert("RGB"))
        after = np.asarray(image.convert("RGB"))
        outside = np.ones(before.shape[:2], bool)
        outside[10 - 4 : 30 + 4, 10 - 4 : 30 + 4] = False  # region + dilate 4
        assert (before[outside] == after[outside]).all()
    else:
        assert image.mode == "RGBA"


@pytest.mark.parametrize(
    ("job_type", "params"),
    [
        ("bg_remove", {"halo": 2, "shadow": "drop"}),
        ("cutout_subject", {"padding": 8, "padding_unit": "px", "min_region": 0}),
        (
            "object_remove",
            {"regions": [{"kind": "rect", "x": 10, "y": 10, "w": 20, "h": 20}], "dilate": 4},
        ),
        ("white_bg_ecomm", {"fill": 0.85}),
        ("upscale_2k", {}),
        ("jpeg_to_png", {"transparent": "color", "key_color": "#e6e6e6", "tolerance": 10}),
        ("jpeg_to_png", {"transparent": "subject"}),
    ],
)
async def test_every_type_runs_through_the_node_pack(ctx, s3, job_type, params) -> None:
    job, source = product_job(s3.create_bucket(), job_type, params)
    result = await run_job(ctx, job)
    assert result["status"] == "SUCCEEDED", result
    [output] = result["outputs"]
    with Image.open(io.BytesIO(s3_object(s3, output["url"]))) as image:
        image.load()
        assert (image.width, image.height) == (output["width"], output["height"])
        _check(job_type, image, source)
    names = {m["name"] for m in result["metrics"]["models"]}
    expected = {
        "bg_remove": {"birefnet-general"},
        "cutout_subject": {"birefnet-general"},
        "white_bg_ecomm": {"birefnet-general"},
        "object_remove": {"big-lama"},
        "upscale_2k": {"realesrgan-x4plus"},
        "jpeg_to_png": {"birefnet-general"} if params.get("transparent") == "subject" else set(),
    }[job_type]
    assert names == expected
    assert all(m["version"] and m["sha256"] for m in result["metrics"]["models"])


async def test_webp_and_jpeg_output_formats(ctx, s3) -> None:
    bucket = s3.create_bucket()
    source = data_uri(png_bytes(Image.new("RGB", (600, 400), (10, 120, 200))))
    _, key_b64 = callback_key()
    for fmt, pil_format in (("webp", "WEBP"), ("jpeg", "JPEG")):
        job = payload(
            "upscale_2k",
            source,
            params={"output_format": fmt, "target": 512},
            output_prefix=f"s3://{bucket}/{fmt}/",
            callback_hmac=key_b64,
        )
        result = await run_job(ctx, job)
        assert result["status"] == "SUCCEEDED", result
        [output] = result["outputs"]
        assert output["format"] == fmt and output["url"].endswith("jpg" if fmt == "jpeg" else fmt)
        with Image.open(io.BytesIO(s3_object(s3, output["url"]))) as image:
            assert image.format == pil_format and image.size == (512, 341)  # exact long edge


async def test_presigned_put_list_and_signed_prefix(ctx, web) -> None:
    web.route("PUT", "/put/*", Reply(200))
    source = data_uri(png_bytes(Image.new("RGB", (32, 32), "white")))
    _, key_b64 = callback_key()
    targets = [{"put_url": web.url("/put/a?sig=s3cr3t"), "url": "https://cdn.example/a.png"}]
    result = await run_job(
        ctx, payload("jpeg_to_png", source, outputs=targets, callback_hmac=key_b64)
    )
    assert result["status"] == "SUCCEEDED", result
    assert result["outputs"][0]["url"] == "https://cdn.example/a.png"
    prefix = web.url("/put/user/job/") + "?token=abc"
    result = await run_job(
        ctx, payload("jpeg_to_png", source, output_prefix=prefix, callback_hmac=key_b64)
    )
    assert result["status"] == "SUCCEEDED", result
    [put] = [r for r in web.requests if r.method == "PUT" and r.path.startswith("/put/user")]
    assert put.path == "/put/user/job/out_00.png" and put.query == "token=abc"
    assert "token" not in result["outputs"][0]["url"]


# --- every error code ------------------------------------------------------------------


async def _fail(ctx, job) -> dict:
    result = await run_job(ctx, job)
    assert result["status"] == "FAILED"
    assert result["outputs"] == []
    assert "Traceback" not in json.dumps(result)
    return result


async def test_invalid_payload_still_signs_a_callback(ctx, web) -> None:
    key, key_b64 = callback_key()
    job = payload(
        "paint_it",
        "https://x.example/a.png",
        output_prefix="s3://b/p/",
        webhook_url=web.url("/hook"),
        callback_hmac=key_b64,
    )
    result = await _fail(ctx, job)
    assert result["error_code"] == "INVALID_PAYLOAD" and "type" in result["error"]
    assert assert_signed(callbacks(web)[0], key)["job_id"] == job["job_id"]


async def test_a_segmenter_the_worker_does_not_serve_fails_before_any_work(ctx, web) -> None:
    web.route("GET", "/in.png", Reply.ok(product_photo(), "image/png"))
    ctx.settings = ctx.settings.model_copy(update={"segmenters": ["u2netp"]})  # a lite worker
    _, key_b64 = callback_key()
    job = payload("bg_remove", web.url("/in.png"), output_prefix="s3://b/p/", callback_hmac=key_b64)
    result = await _fail(ctx, job)  # bg_remove defaults to segmenter birefnet
    assert result["error_code"] == "MODEL_UNAVAILABLE"
    assert "params.segmenter: birefnet is not served" in result["error"]
    assert web.requests_for("GET", "/in.png") == []
    # Types and variants that use no segmenter still run on the lite worker.
    plain = payload("jpeg_to_png", web.url("/in.png"), callback_hmac=key_b64)
    assert (await run_job(ctx, plain))["error_code"] != "MODEL_UNAVAILABLE"


async def test_invalid_params_names_the_field(ctx) -> None:
    _, key_b64 = callback_key()
    job = payload(
        "bg_remove",
        "https://x.example/a.png",
        params={"halo": 99},
        output_prefix="s3://b/p/",
        callback_hmac=key_b64,
    )
    result = await _fail(ctx, job)
    assert result["error_code"] == "INVALID_PARAMS" and "params.halo" in result["error"]


async def test_missing_callback_key_fails_before_any_work(ctx, web) -> None:
    web.route("GET", "/in.png", Reply.ok(b"never fetched", "image/png"))
    job = payload(
        "jpeg_to_png",
        web.url("/in.png"),
        output_prefix="s3://b/p/",
        webhook_url=web.url("/hook"),
        callback_hmac=base64.b64encode(b"short").decode(),
    )
    result = await _fail(ctx, job)
    assert result["error_code"] == "CALLBACK_KEY_MISSING"
    assert web.requests_for("GET", "/in.png") == [] and callbacks(web) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/a.png",
        "ftp://x.example/a.png",
        "file:///etc/passwd",
    ],
)
async def test_forbidden_urls(ctx, url: str) -> None:
    _, key_b64 = callback_key()
    result = await _fail(
        ctx, payload("jpeg_to_png", url, output_prefix="s3://b/p/", callback_hmac=key_b64)
    )
    assert result["error_code"] == "INPUT_FORBIDDEN_URL"


async def test_fetch_failed_too_large_and_not_image(ctx, web) -> None:
    web.route("GET", "/missing.png", Reply(404))
    web.route("GET", "/huge.png", Reply.ok(b"\x89PNG" + b"0" * 4096, "image/png"))
    web.route("GET", "/text.png", Reply.ok(b"hello, I am text", "image/png"))
    _, key_b64 = callback_key()
    small = ctx.settings.model_copy(update={"max_input_bytes": 1024})
    cases = [("/missing.png", "INPUT_FETCH_FAILED"), ("/text.png", "INPUT_NOT_IMAGE")]
    for path, code in cases:
        result = await _fail(
            ctx,
            payload("jpeg_to_png", web.url(path), output_prefix="s3://b/p/", callback_hmac=key_b64),
        )
        assert result["error_code"] == code, result
    ctx.settings = small
    result = await _fail(
        ctx,
        payload(
            "jpeg_to_png", web.url("/huge.png"), output_prefix="s3://b/p/", callback_hmac=key_b64
        ),
    )
    assert result["error_code"] == "INPUT_TOO_LARGE"


async def test_decompression_bomb_is_too_large(ctx) -> None:
    ctx.settings = ctx.settings.model_copy(update={"max_input_pixels": 1000})
    result = await _fail(ctx, small_job(size=64))
    assert result["error_code"] == "INPUT_TOO_LARGE"


async def test_node_error_reports_node_without_traceback(ctx, double) -> None:
    double.faults = Faults(fail={"SimplyPNGColourKey": "kaboom in node"})
    result = await _fail(ctx, small_job(params={"transparent": "color"}))
    assert result["error_code"] == "NODE_ERROR"
    details = result["error_details"]
    assert details["node_type"] == "SimplyPNGColourKey" and "kaboom" in details["message"]
    assert details["exception_type"].endswith("DoubleInjectedError")


async def test_workflow_invalid_when_comfyui_rejects_the_prompt(ctx) -> None:
    # A value outside the node's declared range fails ComfyUI's validation (HTTP 400).
    graph = ctx.registry["object_remove"].graphs["object_remove.json"]
    inpaint = next(n for n in graph.values() if n["class_type"] == "SimplyPNGInpaint")
    original = inpaint["inputs"]["resolution"]
    inpaint["inputs"]["resolution"] = 5  # below the declared minimum of 64
    regions = [{"kind": "rect", "x": 4, "y": 4, "w": 8, "h": 8}]
    try:
        result = await _fail(ctx, small_job("object_remove", params={"regions": regions}))
    finally:
        inpaint["inputs"]["resolution"] = original
    assert result["error_code"] == "WORKFLOW_INVALID" and "SimplyPNGInpaint" in result["error"]


async def test_timeout_interrupts_and_removes_the_prompt(ctx, double) -> None:
    # The colour key runs until released, so the job times out inside ComfyUI; 10 s leaves a
    # slow machine ample time to fetch, decode and queue before that.
    release = threading.Event()
    double.faults = Faults(hold={"SimplyPNGColourKey": release})
    try:
        result = await _fail(ctx, small_job(params={"transparent": "color"}, timeout_s=10))
    finally:
        release.set()
    assert result["error_code"] == "TIMEOUT"
    kinds = [r.get("path") or r.get("kind") for r in double.requests[-3:]]
    assert any("interrupt" in str(k) for k in kinds), double.requests[-3:]


async def test_cancel_interrupts_and_returns_cancelled(ctx, double, web) -> None:
    release = threading.Event()
    double.faults = Faults(hold={"SimplyPNGColourKey": release})
    key, key_b64 = callback_key()
    source = data_uri(png_bytes(Image.new("RGB", (32, 32))))
    job = payload(
        "jpeg_to_png",
        source,
        params={"transparent": "color"},
        output_prefix="s3://b/p/",
        callback_hmac=key_b64,
        webhook_url=web.url("/hook"),
    )
    queued = len([r for r in double.requests if r["path"] == "/prompt"])
    task = asyncio.create_task(run_job(ctx, job))
    try:
        # The colour key runs until released: the prompt cannot finish before the cancel,
        # however slow the machine. The cap only catches a hang.
        async with asyncio.timeout(600):
            while len([r for r in double.requests if r["path"] == "/prompt"]) == queued:
                await asyncio.sleep(0.05)
        task.cancel()
        result = await task
    finally:
        release.set()
    assert result["status"] == "FAILED" and result["error_code"] == "CANCELLED"
    assert any(r["path"] == "/interrupt" for r in double.requests)
    assert assert_signed(callbacks(web)[0], key)["error_code"] == "CANCELLED"


async def test_output_upload_failed_keeps_secret_out_of_message(ctx, web) -> None:
    web.route("PUT", "/broken/*", Reply(503))
    prefix = web.url("/broken/") + "?X-Amz-Signature=topsecret"
    result = await _fail(ctx, small_job(output_prefix=prefix))
    assert result["error_code"] == "OUTPUT_UPLOAD_FAILED"
    assert "topsecret" not in json.dumps(result)


async def test_comfyui_unavailable(ctx) -> None:
    await ctx.comfy.aclose()
    ctx.comfy = ComfyClient("http://127.0.0.1:9", idle_timeout_s=1)
    result = await _fail(ctx, small_job())
    assert result["error_code"] == "COMFYUI_UNAVAILABLE"


async def test_callback_failure_never_loses_the_result(ctx, s3, web) -> None:
    web.route("POST", "/down", Reply(503))
    bucket = s3.create_bucket()
    job = small_job(output_prefix=f"s3://{bucket}/p/", webhook_url=web.url("/down"))
    result = await run_job(ctx, job)
    assert result["status"] == "SUCCEEDED" and len(result["outputs"]) == 1
    assert len(web.requests_for("POST", "/down")) == ctx.settings.callback_max_attempts


async def test_blank_image_has_no_subject_for_cutout(ctx) -> None:
    from simplypng.models import registry

    original = registry.get_segmenter

    class Nothing:
        spec = original().spec

        def predict(self, images):
            return np.zeros(images.shape[:3], np.float32)

    registry.get_segmenter = lambda name="birefnet": Nothing()  # a segmenter that finds nothing
    try:
        result = await _fail(ctx, small_job("cutout_subject", colour="white"))
    finally:
        registry.get_segmenter = original
    assert result["error_code"] == "NO_SUBJECT", result


async def test_same_job_rerun_and_concurrent_jobs(ctx, s3) -> None:
    bucket = s3.create_bucket()
    _, key_b64 = callback_key()
    source = data_uri(png_bytes(Image.new("RGB", (40, 40), (9, 99, 199))))
    job = payload("jpeg_to_png", source, output_prefix=f"s3://{bucket}/a/", callback_hmac=key_b64)
    first = await run_job(ctx, job)
    again = await run_job(ctx, job)  # Runpod may deliver a job twice (re-queue after a lease)
    assert first["status"] == again["status"] == "SUCCEEDED", again
    assert first["outputs"][0]["sha256"] == again["outputs"][0]["sha256"]
    other = payload(
        "jpeg_to_png",
        source,
        params={"transparent": "color", "key_color": "#0963c7"},
        output_prefix=f"s3://{bucket}/b/",
        callback_hmac=key_b64,
    )
    both = await asyncio.gather(run_job(ctx, job), run_job(ctx, other))
    assert [r["status"] for r in both] == ["SUCCEEDED", "SUCCEEDED"], both
    assert both[0]["outputs"][0]["url"] != both[1]["outputs"][0]["url"]
    alpha = Image.open(io.BytesIO(s3_object(s3, both[1]["outputs"][0]["url"]))).getchannel("A")
    assert alpha.getextrema() == (0, 0)  # the keyed colour is the whole image


async def test_timeout_covers_the_upload(ctx, web) -> None:
    web.route("PUT", "/slow/*", Reply(200, delay_s=3.0))
    result = await _fail(ctx, small_job(size=16, output_prefix=web.url("/slow/"), timeout_s=1))
    assert result["error_code"] == "TIMEOUT"


async def test_unexpected_bug_is_internal_error_without_details(ctx) -> None:
    class Broken(type(ctx.handover)):  # type: ignore[misc]
        async def fetch(self, ref, run_folder):
            raise RuntimeError("secret internal detail /srv/worker/x.py")

    ctx.handover.__class__ = Broken
    result = await _fail(ctx, small_job(size=16))
    assert result["error_code"] == "INTERNAL_ERROR"
    assert "secret internal detail" not in json.dumps(result)
