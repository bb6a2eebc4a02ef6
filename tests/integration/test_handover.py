"""Raw pixel hand-over end to end: the file path and the HTTP path (uploads in parts), inputs at
the documented caps, cleanup, and no input metadata in any output.

Runs the real pipeline against the ComfyUI test double with our node pack (SimplyPNGLoadRaw /
SimplyPNGSaveRaw), moto's S3 server and a loopback web server for inputs.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.handover import FileHandover, HttpHandover
from handler.pipeline import WorkerContext, run_job
from handler.settings import REPO_ROOT, Settings
from tests.fakes.comfy_double import ComfyDouble, serve_in_thread
from tests.fakes.dirty_images import assert_no_metadata, dirty_jpeg, dirty_png, dirty_webp
from tests.fakes.http_server import Reply
from tests.fakes.s3_server import MotoS3
from tests.fakes.worker_stack import callback_key, payload
from tests.integration.conftest import close_context, make_context

pytestmark = pytest.mark.torch

SMALL_UPLOAD = 1024 * 1024  # a 1 MiB upload limit makes a small image need several parts


@pytest.fixture(scope="module")
def small_upload_double(models, tmp_path_factory) -> Iterator[ComfyDouble]:
    models_dir, _ = models
    server = ComfyDouble(
        tmp_path_factory.mktemp("comfy-small-upload"),
        models_dir=models_dir,
        node_packs=[REPO_ROOT / "comfy_nodes" / "simplypng"],
        max_upload_bytes=SMALL_UPLOAD,
    )
    with serve_in_thread(server) as running:
        yield running


async def _context(
    settings: Settings, double: ComfyDouble, lock: Path, **overrides: object
) -> WorkerContext:
    return await make_context(settings.model_copy(update=overrides), double, lock)


@pytest.fixture
async def http_ctx(settings, small_upload_double, models) -> AsyncIterator[WorkerContext]:
    context = await _context(
        settings,
        small_upload_double,
        models[1],
        comfyui_handover="http",
        comfyui_max_upload_mb=SMALL_UPLOAD / (1024 * 1024),
    )
    yield context
    await close_context(context)


def _job(bucket: str, url: str, job_type: str = "jpeg_to_png", **params: object) -> dict:
    _, key_b64 = callback_key()
    return payload(
        job_type,
        url,
        params=dict(params),
        output_prefix=f"s3://{bucket}/o/",
        callback_hmac=key_b64,
        timeout_s=600,
    )


def _output_pixels(s3: MotoS3, url: str) -> np.ndarray:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    data = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_the_context_picks_the_file_path_when_folders_are_known(ctx, http_ctx) -> None:
    assert isinstance(ctx.handover, FileHandover)
    assert isinstance(http_ctx.handover, HttpHandover)


async def test_file_handover_round_trips_pixels_and_cleans_up(ctx, s3, web, double) -> None:
    bucket = s3.create_bucket()
    pixels = _noise(301, 157, channels=4, seed=1)
    pixels[..., 3] = np.where(pixels[..., 3] < 40, 0, pixels[..., 3])
    web.route("GET", "/in/rgba.png", Reply.ok(_png(pixels), "image/png"))
    result = await run_job(ctx, _job(bucket, web.url("/in/rgba.png")))
    assert result["status"] == "SUCCEEDED", result
    out = _output_pixels(s3, result["outputs"][0]["url"])
    # transparent "none" keeps the input's own alpha; hidden colours are zeroed, nothing else moves
    expected = pixels.copy()
    expected[expected[..., 3] == 0] = 0
    np.testing.assert_array_equal(out, expected)
    assert [p for p in _files_under(double.input_dir) if "simplypng/" in str(p)] == []
    assert [p for p in _files_under(double.output_dir) if "simplypng/" in str(p)] == []


async def test_http_handover_uploads_in_parts_below_the_limit(
    http_ctx, s3, web, small_upload_double
) -> None:
    bucket = s3.create_bucket()
    pixels = _noise(900, 700, seed=2)  # 1.9 MB raw: two parts under a 1 MiB limit
    web.route("GET", "/in/big.png", Reply.ok(_png(pixels), "image/png"))
    before = set(_files_under(small_upload_double.input_dir))
    result = await run_job(http_ctx, _job(bucket, web.url("/in/big.png")))
    assert result["status"] == "SUCCEEDED", result
    out = _output_pixels(s3, result["outputs"][0]["url"])
    np.testing.assert_array_equal(out[..., :3], pixels)
    assert (out[..., 3] == 255).all()
    uploaded = set(_files_under(small_upload_double.input_dir)) - before
    parts = sorted(p.name for p in uploaded if ".part" in p.name)
    assert parts == ["in_00.npy.part000", "in_00.npy.part001"]
    assert all(p.stat().st_size <= SMALL_UPLOAD for p in uploaded)


async def test_http_handover_runs_a_model_type(http_ctx, s3, web) -> None:
    bucket = s3.create_bucket()
    web.route("GET", "/in/p.png", Reply.ok(_png(_noise(64, 48, seed=3)), "image/png"))
    result = await run_job(http_ctx, _job(bucket, web.url("/in/p.png"), "bg_remove"))
    assert result["status"] == "SUCCEEDED", result
    out = _output_pixels(s3, result["outputs"][0]["url"])
    assert out.shape == (48, 64, 4)
    assert (out[out[..., 3] == 0] == 0).all()


@pytest.mark.parametrize("source", ["jpeg", "png", "webp"])
@pytest.mark.parametrize(
    ("job_type", "fmt"), [("jpeg_to_png", "png"), ("bg_remove", "webp"), ("white_bg_ecomm", "jpeg")]
)
async def test_no_planted_metadata_reaches_an_output(ctx, s3, web, source, job_type, fmt) -> None:
    """EXIF, XMP, ICC, IPTC, C2PA, comments and text chunks are planted in every input."""
    data = {"jpeg": dirty_jpeg, "png": dirty_png, "webp": dirty_webp}[source]()
    assert b"secret" in data
    bucket = s3.create_bucket()
    web.route("GET", f"/in/dirty.{source}", Reply.ok(data, f"image/{source}"))
    job = _job(bucket, web.url(f"/in/dirty.{source}"), job_type, output_format=fmt)
    result = await run_job(ctx, job)
    assert result["status"] == "SUCCEEDED", result
    url = result["outputs"][0]["url"]
    bucket_name, key = url.removeprefix("s3://").split("/", 1)
    body = s3.client().get_object(Bucket=bucket_name, Key=key)["Body"].read()
    from handler.outputs import EncodedImage

    assert_no_metadata(EncodedImage(body, 1, 1, fmt, "", ""))  # type: ignore[arg-type]


def _cap_jpeg(settings: Settings) -> tuple[bytes, int]:
    """A noisy JPEG at exactly MAX_INPUT_PIXELS (6000x6000 by default) within the byte cap."""
    side = int(settings.max_input_pixels**0.5)
    rng = np.random.default_rng(7)
    # Smooth gradients plus noise: a photo-like file that still compresses to under the cap.
    yy, xx = np.mgrid[:side, :side]
    base = np.stack([xx * 255 // side, yy * 255 // side, (xx + yy) * 127 // side], -1)
    pixels = np.clip(base + rng.integers(-24, 25, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), side


@pytest.mark.parametrize("handover", ["file", "http"])
async def test_an_input_at_the_pixel_cap_is_processed(
    settings, double, models, s3, web, handover
) -> None:
    data, side = _cap_jpeg(settings)
    assert side * side == settings.max_input_pixels
    assert len(data) <= settings.max_input_bytes
    # The default upload limit: the raw hand-over (108 MB) needs two parts over HTTP.
    ctx = await _context(settings, double, models[1], comfyui_handover=handover)
    before = {*_files_under(double.input_dir), *_files_under(double.output_dir)}
    try:
        bucket = s3.create_bucket()
        web.route("GET", "/in/cap.jpg", Reply.ok(data, "image/jpeg"))
        result = await run_job(ctx, _job(bucket, web.url("/in/cap.jpg")))
    finally:
        await close_context(ctx)
        # Over HTTP the worker cannot delete ComfyUI's files; the test does.
        for path in {*_files_under(double.input_dir), *_files_under(double.output_dir)} - before:
            path.unlink()
    assert result["status"] == "SUCCEEDED", result
    output = result["outputs"][0]
    assert (output["width"], output["height"]) == (side, side)
    out = _output_pixels(s3, output["url"])
    with Image.open(io.BytesIO(data)) as source:
        np.testing.assert_array_equal(out[..., :3], np.array(source.convert("RGB")))


@pytest.mark.parametrize("job_type", ["jpeg_to_png", "bg_remove"])
async def test_same_size_inputs_go_to_comfyui_as_one_batch(ctx, s3, web, double, job_type) -> None:
    from simplypng.models import registry

    sources = [_noise(40, 30, seed=10 + i) for i in range(3)]
    sources.insert(2, _noise(20, 20, seed=9))  # a different size: a prompt of its own
    for index, pixels in enumerate(sources):
        web.route("GET", f"/in/b{index}.png", Reply.ok(_png(pixels), "image/png"))
    job = _job(s3.create_bucket(), web.url("/in/b0.png"), job_type)
    job["inputs"] = [{"url": web.url(f"/in/b{i}.png")} for i in range(len(sources))]
    seen: list[int] = []
    real = registry.get_segmenter

    class Recording:
        spec = real().spec

        def predict(self, images):
            seen.append(len(images))
            return real().predict(images)

    prompts = sum(r.get("path") == "/prompt" for r in double.requests)
    registry.get_segmenter = lambda name="birefnet": Recording()
    try:
        result = await run_job(ctx, job)
    finally:
        registry.get_segmenter = real
    assert result["status"] == "SUCCEEDED", result
    assert sum(r.get("path") == "/prompt" for r in double.requests) - prompts == 2
    if job_type == "bg_remove":
        assert sorted(seen) == [1, 3]  # one model pass for the three same-size inputs
    urls = [output["url"] for output in result["outputs"]]
    assert [url.rsplit("/", 1)[1] for url in urls] == [f"out_{i:02d}.png" for i in range(4)]
    for url, pixels in zip(urls, sources, strict=True):
        out = _output_pixels(s3, url)
        assert out.shape[:2] == pixels.shape[:2]
        if job_type == "jpeg_to_png":
            np.testing.assert_array_equal(out[..., :3], pixels)  # each output is its own input
