"""Worker handler benchmarks; prints medians (and p90) and ratios. Nothing here is asserted.

1. Side by side, interleaved in one run, on the same deterministic photo-like JPEG:
   (a) a minimal ComfyUI client: fetch the JPEG, POST /upload/image, LoadImage -> SaveImage,
       GET /view (the floor every ComfyUI client pays, as worker-comfyui does);
   (b) our whole jpeg_to_png job at that size: input fetch, raw hand-over, ComfyUI, sanitise,
       one encode, S3 upload (moto's server), signed callback (loopback receiver);
   (c) our job at 1 MP.
   Prints the ratio (b)/(a) and the stage split of (b) and (c). Against a real ComfyUI with
   --comfyui-url (or COMFYUI_URL); --comfyui-dir (or COMFYUI_DIR) lets the worker use the file
   hand-over as in the image. Without a URL it runs against the ComfyUI test double.
2. The hand-over format (.npy against a level-0 PNG) and the one encode (sanitize_pixels +
   encode_pixels against fpng alone) on a 2048x2048 RGBA cutout.
3. PNG encoders: each `handler.outputs.encode_png` option, WebP lossless and JPEG q92 on the
   same cutout, compared with Pillow's default zlib level 6.

  COMFYUI_URL=http://127.0.0.1:8188 COMFYUI_DIR=~/ComfyUI python scripts/bench_handler.py
  python scripts/bench_handler.py --repeats 9
  python scripts/bench_handler.py --quick             # tiny sizes, 1 repeat (smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fpng
import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handler import rawpixels  # noqa: E402
from handler.comfy.client import ComfyClient, PromptResult  # noqa: E402
from handler.inputs import input_s3_client_factory  # noqa: E402
from handler.models_lock import ModelsLock  # noqa: E402
from handler.outputs import (  # noqa: E402
    encode_jpeg,
    encode_pixels,
    encode_png,
    encode_webp,
    sanitize,
    sanitize_pixels,
)
from handler.pipeline import WorkerContext, run_job  # noqa: E402
from handler.settings import Settings  # noqa: E402
from handler.storage import output_s3_client_factory  # noqa: E402
from handler.url_guard import make_http_client  # noqa: E402
from handler.workflows import load_registry  # noqa: E402
from tests.fakes.comfy_double import ComfyDouble, serve_in_thread  # noqa: E402
from tests.fakes.http_server import LoopbackHTTPServer, Reply  # noqa: E402
from tests.fakes.s3_server import MotoS3, moto_s3_server  # noqa: E402
from tests.fakes.worker_stack import callback_key, payload  # noqa: E402

JOB_TYPE = "jpeg_to_png"
MIB = 1024 * 1024
# Rows of the overhead table, in pipeline order: (name, what it covers).
STAGES: tuple[tuple[str, str], ...] = (
    ("download", "fetch + decode the input (SSRF-guarded)"),
    ("queue", "raw hand-over to ComfyUI + POST /prompt to execution_start"),
    ("execute", "ComfyUI running the graph (8-bit load, opaque alpha, save: no float step)"),
    ("prompt_rest", "run_prompt's time outside queue and execute (websocket, /history)"),
    ("collect", "read the raw output (file) or GET /view (http)"),
    ("encode", "sanitize_pixels + encode_pixels (the job's one encode)"),
    ("upload", "S3 PUT of the PNG"),
    ("callback", "signed callback POST"),
    ("other", "everything else: parsing, cleanup, result"),
)
PNG_BASELINE = "pillow"
# Options compared; (name, encoder). The PNG ones are handler.outputs' choices.
ENCODERS: tuple[tuple[str, Callable[[Image.Image], bytes]], ...] = (
    ("fpng", lambda image: encode_png(image, "fpng")),
    ("pillow-fast", lambda image: encode_png(image, "pillow-fast")),
    ("pillow", lambda image: encode_png(image, "pillow")),
    ("webp-lossless", encode_webp),  # RGBA input: encode_webp is lossless
    ("jpeg-q92", encode_jpeg),  # lossy, flattened on white: size reference only
)
LOSSLESS = frozenset({"fpng", "pillow-fast", "pillow", "webp-lossless"})
PNG_OPTIONS = ("fpng", "pillow-fast", "pillow")


# --- deterministic test images ----------------------------------------------------------------


def _upsampled_noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """Smooth noise with features about `cell` pixels wide (bicubic upsampled random grid)."""
    grid = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    plane = Image.fromarray(grid, mode="F").resize(
        (width, height), Image.Resampling.BICUBIC, box=(0, 0, width / cell, height / cell)
    )
    return np.asarray(plane, dtype=np.float32)


def photo_like(width: int, height: int, seed: int = 7) -> np.ndarray:
    """An HxWx3 uint8 'photo': colour gradients, multi-scale texture and sensor grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(width, 1), yy / max(height, 1)
    base = np.stack(
        [
            150 + 60 * u - 30 * v + 20 * np.sin(3.1 * v + 1.0),
            120 + 40 * v + 25 * np.cos(2.3 * u),
            100 + 50 * (1 - u) * v + 15 * np.sin(4.7 * u * v),
        ],
        axis=-1,
    )
    # Texture is mostly luminance in real photos: one plane shared by the channels.
    texture = np.zeros((height, width), np.float64)
    for cell, amplitude in ((256, 18.0), (64, 10.0), (16, 6.0), (4, 4.0)):
        texture += amplitude * _upsampled_noise(rng, width, height, cell)
    grain = rng.normal(0.0, 2.5, (height, width, 3)).astype(np.float32)
    pixels = base + texture[..., None] + grain
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def cutout_rgba(size: int, seed: int = 11) -> Image.Image:
    """A sanitized RGBA cutout: a photo-like subject with a 1.5 px feathered irregular edge;
    about half of the frame is alpha 0 (colour zeroed there, as `sanitize` does)."""
    rgb = photo_like(size, size, seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - size * 0.52, xx - size * 0.48
    angle, radius = np.arctan2(dy, dx), np.hypot(dx, dy)
    edge = size * 0.36 * (1 + 0.12 * np.sin(3 * angle) + 0.06 * np.sin(7 * angle + 1.3))
    alpha = np.clip((edge - radius) / 1.5 * 0.5 + 0.5, 0.0, 1.0)
    rgba = np.dstack([rgb, np.rint(alpha * 255).astype(np.uint8)])
    return sanitize(Image.fromarray(rgba, mode="RGBA"))


def photo_jpeg(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_like(size, size)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --- statistics and formatting ----------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def rotated(items: list[Any], by: int) -> list[Any]:
    """The list rotated by `by`: each repeat starts with a different variant."""
    if not items:
        return items
    k = by % len(items)
    return items[k:] + items[:k]


# --- 1. side by side: a minimal ComfyUI client and our whole job ---------------------------


class TimedComfyClient(ComfyClient):
    """The real ComfyClient, also timing what metrics.timings leaves out of run_prompt."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}

    async def run_prompt(self, prompt: dict[str, Any], **kwargs: Any) -> PromptResult:
        started = time.perf_counter()
        result = await super().run_prompt(prompt, **kwargs)
        inside = result.timings.get("queue_s", 0.0) + result.timings.get("execute_s", 0.0)
        self.seconds["prompt_rest"] = time.perf_counter() - started - inside
        return result


class FinishedJobs(logging.Handler):
    """Keeps the stage timings of the pipeline's "job finished" log record.

    The callback's own time cannot be in the signed result it sends, so only this record has it.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.timings: dict[str, float] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        timings = getattr(record, "timings", None)
        if record.getMessage() == "job finished" and isinstance(timings, dict):
            self.timings = dict(timings)


# LoadImage -> SaveImage: the floor any ComfyUI client pays for a PNG out of a JPEG in.
MINIMAL_GRAPH: dict[str, dict[str, Any]] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "x"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


@dataclass
class Rig:
    """The servers around the worker for one benchmark run."""

    ctx: WorkerContext
    comfy: TimedComfyClient
    web: LoopbackHTTPServer
    bucket: str
    finished: FinishedJobs
    target: str  # what ComfyUI this is, for the printout
    jobs: int = 0
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def bench_settings(s3: MotoS3, png_encoder: str, handover: str) -> Settings:
    return s3.settings(
        url_allowlist=["127.0.0.0/8"],  # inputs and callbacks are on loopback here
        allow_http_inputs=True,
        enabled_types=[JOB_TYPE],
        png_encoder=png_encoder,
        comfyui_handover=handover,
    )


async def run_minimal(rig: Rig, size: int) -> dict[str, float]:
    """(a): fetch the JPEG, upload it, LoadImage -> SaveImage, download the PNG over /view."""
    started = time.perf_counter()
    async with httpx.AsyncClient() as http:
        data = (await http.get(rig.web.url(f"/in/{size}.jpg"))).content
    folder = f"bench-minimal/{uuid.uuid4().hex}"
    name = await rig.comfy.upload_image(data, "in.jpg", folder)
    graph = copy.deepcopy(MINIMAL_GRAPH)
    graph["1"]["inputs"]["image"] = name
    graph["2"]["inputs"]["filename_prefix"] = f"{folder}/out"
    result = await rig.comfy.run_prompt(graph, timeout_s=600)
    png = await rig.comfy.download_output(result.outputs["2"][0])
    wall = time.perf_counter() - started
    if not png.startswith(b"\x89PNG"):
        raise RuntimeError("the minimal client got no PNG back")
    for base in (rig.ctx.input_dir, rig.ctx.output_dir):
        if base is not None:
            shutil.rmtree(base / folder, ignore_errors=True)
    return {"execute": result.timings.get("execute_s", 0.0), "wall": wall}


async def run_ours(rig: Rig, size: int) -> dict[str, float]:
    """(b)/(c): our whole jpeg_to_png job; returns its seconds per stage and wall."""
    _, key_b64 = callback_key()
    job = payload(
        JOB_TYPE,
        rig.web.url(f"/in/{size}.jpg"),
        output_prefix=f"s3://{rig.bucket}/bench/",
        webhook_url=rig.web.url("/hook"),
        callback_hmac=key_b64,
        timeout_s=600,
    )
    rig.comfy.seconds.clear()
    rig.finished.timings = None
    started = time.perf_counter()
    result = await run_job(rig.ctx, job)
    wall = time.perf_counter() - started
    rig.jobs += 1
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"benchmark job failed: {result['error_code']}: {result['error']}")
    timings = rig.finished.timings
    if timings is None:
        raise RuntimeError("the pipeline logged no 'job finished' record with timings")
    row = {name: float(timings.get(name, 0.0)) for name, _ in STAGES if name != "other"}
    row.update(rig.comfy.seconds)
    row["other"] = wall - sum(row.values())
    row["wall"] = wall
    return row


def cases(size: int, small: int) -> dict[str, tuple[str, int]]:
    return {
        f"(a) minimal client {size}x{size}": ("minimal", size),
        f"(b) ours {size}x{size}": ("ours", size),
        f"(c) ours {small}x{small}": ("ours", small),
    }


async def bench_side_by_side(rig: Rig, size: int, small: int, repeats: int) -> None:
    for side in {size, small}:
        rig.web.route("GET", f"/in/{side}.jpg", Reply.ok(photo_jpeg(side), "image/jpeg"))
    runners = {"minimal": run_minimal, "ours": run_ours}
    table = cases(size, small)
    for label, (kind, side) in table.items():
        await runners[kind](rig, side)  # warm-up: imports, connections, ComfyUI's first run
        rig.samples[label] = {}
    for repeat in range(repeats):
        for label in rotated(list(table), repeat):
            kind, side = table[label]
            for name, seconds in (await runners[kind](rig, side)).items():
                rig.samples[label].setdefault(name, []).append(seconds)
    delivered = len(rig.web.requests_for("POST", "/hook"))
    if delivered != rig.jobs:
        raise RuntimeError(f"{rig.jobs} jobs ran but {delivered} callbacks arrived")


async def side_by_side(
    size: int,
    small: int,
    repeats: int,
    png_encoder: str,
    comfyui_url: str | None,
    comfyui_dir: Path | None,
) -> Rig:
    with tempfile.TemporaryDirectory(prefix="bench_handler_") as tmp, ExitStack() as stack:
        s3 = stack.enter_context(moto_s3_server())
        if comfyui_url is None:
            double = ComfyDouble(Path(tmp) / "comfy", node_packs=[REPO / "comfy_nodes/simplypng"])
            stack.enter_context(serve_in_thread(double))
            assert double.base_url is not None
            url = double.base_url
            folders: tuple[Path, Path] | tuple[None, None] = (double.input_dir, double.output_dir)
            target = "the ComfyUI test double (NOT ComfyUI: pass --comfyui-url for real figures)"
        else:
            url = comfyui_url
            folders = (
                (comfyui_dir / "input", comfyui_dir / "output")
                if comfyui_dir is not None
                else (None, None)
            )
            target = f"ComfyUI at {url}"
        web = stack.enter_context(LoopbackHTTPServer())
        web.route("POST", "/hook", Reply(204))
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
        handover = "file" if folders[0] is not None else "http"
        settings = bench_settings(s3, png_encoder, handover)
        comfy = TimedComfyClient(url, idle_timeout_s=settings.comfyui_idle_timeout_s)
        version = await comfy.comfyui_version()
        ctx = WorkerContext(
            settings=settings,
            comfy=comfy,
            registry=load_registry(settings.workflows_dir, [JOB_TYPE]),
            http=make_http_client(settings),
            callback_http=httpx.AsyncClient(),
            models=ModelsLock.load(settings.models_lock),
            s3_inputs=input_s3_client_factory(settings),
            s3_outputs=output_s3_client_factory(settings),
            comfyui_version=version,
            input_dir=folders[0],
            output_dir=folders[1],
        )
        finished = FinishedJobs()
        pipeline_log = logging.getLogger("handler.pipeline")
        pipeline_log.addHandler(finished)
        pipeline_log.setLevel(logging.INFO)
        pipeline_log.propagate = False  # keep per-job INFO lines out of the printed table
        target += f", version {version}, hand-over: {handover}"
        rig = Rig(ctx, comfy, web, s3.create_bucket("bench-handler"), finished, target)
        try:
            await bench_side_by_side(rig, size, small, repeats)
        finally:
            pipeline_log.removeHandler(finished)
            pipeline_log.propagate = True
            await ctx.http.aclose()
            await ctx.callback_http.aclose()
            await comfy.aclose()
        return rig


def print_side_by_side(rig: Rig, size: int, small: int, repeats: int) -> None:
    labels = list(cases(size, small))
    print(f"Side by side on {rig.target}")
    print(f"wall per job, ms: median / p90 of {repeats}, interleaved")
    for label in labels:
        wall = rig.samples[label]["wall"]
        print(f"{label:<32}{median(wall) * 1000:9.1f} /{p90(wall) * 1000:8.1f}")
    a, b = (median(rig.samples[label]["wall"]) for label in labels[:2])
    print(f"ratio (b)/(a): {b / a:.2f} (target <= 0.35 on CPU)")
    ours = labels[1:]
    print("stage split of our jobs, ms: median / p90")
    print("stage".ljust(16) + "".join(label.split(" ", 1)[0].rjust(20) for label in ours))
    for name in [name for name, _ in STAGES] + ["wall"]:
        cells = "".join(
            f"{median(rig.samples[label][name]) * 1000:9.1f} /{p90(rig.samples[label][name]) * 1000:8.1f}".rjust(
                20
            )
            for label in ours
        )
        print(name.ljust(16) + cells)
    print("where:")
    for name, meaning in STAGES:
        print(f"  {name:<13}{meaning}")


# --- 2. the hand-over format, and the one encode -------------------------------------------


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def bench_handover_formats(size: int, repeats: int) -> dict[str, list[float]]:
    """Write + read of one RGBA image as .npy and as a level-0 PNG, through a file."""
    pixels = np.asarray(cutout_rgba(size))
    with tempfile.TemporaryDirectory(prefix="bench_handover_") as tmp:
        npy, png = Path(tmp) / "x.npy", Path(tmp) / "x.png"

        def npy_round_trip() -> None:
            rawpixels.write(npy, pixels)
            rawpixels.read(npy)

        def png_round_trip() -> None:
            Image.fromarray(pixels).save(png, compress_level=0)
            with Image.open(png) as image:
                np.asarray(image)

        return {
            ".npy": _timed(npy_round_trip, repeats),
            "PNG level 0": _timed(png_round_trip, repeats),
        }


def bench_one_encode(size: int, repeats: int) -> dict[str, list[float]]:
    """fpng alone against what the worker does to a raw output: sanitize_pixels + encode.

    sanitize_pixels works in place, so each timed run gets a fresh copy made before the clock.
    """
    pixels = np.asarray(cutout_rgba(size))
    results: dict[str, list[float]] = {"fpng alone": [], "sanitize + encode": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for name in rotated(list(results), repeat):
            work = pixels.copy()
            started = time.perf_counter()
            if name == "fpng alone":
                fpng.from_ndarray(work)
            else:
                encode_pixels(sanitize_pixels(work), "png")
            if repeat:
                results[name].append(time.perf_counter() - started)
    return results


def print_formats_and_encode(
    formats: dict[str, list[float]], encode: dict[str, list[float]], size: int, repeats: int
) -> None:
    print(f"Hand-over format, write + read of a {size}x{size} RGBA image, median of {repeats}")
    for name, seconds in formats.items():
        print(f"{name}: {median(seconds) * 1000:.1f} ms")
    fastest = min(formats, key=lambda name: median(formats[name]))
    print(f"hand-over format: {fastest} is the faster")
    base = median(encode["fpng alone"])
    ours = median(encode["sanitize + encode"])
    print(f"One encode of a {size}x{size} RGBA output, median of {repeats}")
    print(f"fpng alone: {base * 1000:.1f} ms; sanitize + encode: {ours * 1000:.1f} ms")
    print(f"ratio sanitize+encode / fpng: {ours / base:.2f} (target <= 2)")


# --- 2. PNG encoders --------------------------------------------------------------------------


def bench_encoders(size: int, repeats: int, notes: list[str]) -> dict[str, tuple[list[float], int]]:
    """{name: (seconds per repeat, bytes)} for each encoder on the same cutout.

    Lossless options are checked once (visible colour and alpha exact); differences under
    alpha 0 are reported in `notes`."""
    image = cutout_rgba(size)
    reference = np.asarray(image)
    results: dict[str, tuple[list[float], int]] = {}
    visible = reference[..., 3] > 0
    for name, encoder in ENCODERS:  # warm-up, and a check that lossless means lossless
        data = encoder(image)
        if name in LOSSLESS:
            with Image.open(io.BytesIO(data)) as decoded:
                pixels = np.asarray(decoded.convert("RGBA"))
            same = pixels == reference
            if not (same[..., 3].all() and same[visible].all()):
                raise RuntimeError(f"{name} changed visible pixels or alpha")
            if not same.all():
                notes.append(f"note: {name} does not keep RGB = 0 under alpha 0")
        results[name] = ([], len(data))
    for repeat in range(repeats):
        for name, encoder in rotated(list(ENCODERS), repeat):
            started = time.perf_counter()
            encoder(image)
            results[name][0].append(time.perf_counter() - started)
    return results


def recommended(results: dict[str, tuple[list[float], int]], max_size_ratio: float) -> str:
    """The fastest PNG option whose file is at most max_size_ratio x Pillow level 6's."""
    limit = results[PNG_BASELINE][1] * max_size_ratio
    fits = [name for name in PNG_OPTIONS if results[name][1] <= limit]
    return min(fits, key=lambda name: median(results[name][0]))


def print_encoders(
    results: dict[str, tuple[list[float], int]], size: int, repeats: int, max_size_ratio: float
) -> None:
    base_time = median(results[PNG_BASELINE][0])
    base_bytes = results[PNG_BASELINE][1]
    print(
        f"Encoders on a {size}x{size} RGBA cutout (photo-like, ~half alpha 0), median of "
        f"{repeats}; vs {PNG_BASELINE} (Pillow zlib level 6, the guideline's default)"
    )
    for name, _ in ENCODERS:
        seconds, size_bytes = results[name]
        t = median(seconds)
        line = f"{name}: {t:.3f} s (p90 {p90(seconds):.3f}), {size_bytes / MIB:.2f} MiB"
        if name == PNG_BASELINE:
            line += ", baseline"
        else:
            speed, ratio = base_time / t, size_bytes / base_bytes
            line += f", {max(speed, 1 / speed):.1f}x {'faster' if speed >= 1 else 'slower'}"
            line += f", {max(ratio, 1 / ratio):.2f}x {'larger' if ratio >= 1 else 'smaller'}"
        print(line)
    default = Settings.model_fields["png_encoder"].default
    pick = recommended(results, max_size_ratio)
    print(f"current default: png_encoder = {default} (handler/settings.py)")
    verdict = "keep it" if pick == default else f"switch to {pick}"
    print(
        f"supported default: {pick} (fastest PNG within {max_size_ratio:g}x of Pillow "
        f"level 6's size): {verdict}"
    )


# --- command line ---------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        width, _, height = part.strip().lower().partition("x")
        if height and height != width:
            raise argparse.ArgumentTypeError(f"only square sizes are benchmarked: {part!r}")
        value = int(width)
        if not 16 <= value <= 8192:
            raise argparse.ArgumentTypeError(f"size out of range 16..8192: {value}")
        sizes.append(value)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_sizes, help="input side for (a) and (b) (2048)")
    parser.add_argument("--small", type=parse_sizes, help="input side for (c) (1024)")
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 8)")
    parser.add_argument("--encode-size", type=int, help="cutout side for sections 2, 3 (2048)")
    parser.add_argument(
        "--comfyui-url", default=os.environ.get("COMFYUI_URL"), help="a running ComfyUI"
    )
    parser.add_argument(
        "--comfyui-dir",
        type=Path,
        default=os.environ.get("COMFYUI_DIR"),
        help="its folder, for the file hand-over (input/, output/)",
    )
    parser.add_argument(
        "--png-encoder",
        choices=PNG_OPTIONS,
        default=Settings.model_fields["png_encoder"].default,
        help="PNG encoder of our jobs (default: the settings')",
    )
    parser.add_argument(
        "--max-size-ratio",
        type=float,
        default=1.25,
        help="largest file, vs Pillow level 6, a recommended PNG default may write (1.25)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat (smoke test)")
    args = parser.parse_args(argv)
    size = args.size[0] if args.size else (128 if args.quick else 2048)
    small = args.small[0] if args.small else (64 if args.quick else 1024)
    repeats = args.repeats or (1 if args.quick else 8)
    encode_size = args.encode_size or (256 if args.quick else 2048)
    if repeats < 1 or encode_size < 16 or not args.max_size_ratio >= 1:
        parser.error("needs --repeats >= 1, --encode-size >= 16, --max-size-ratio >= 1")
    logging.basicConfig(level=logging.WARNING)

    rig = asyncio.run(
        side_by_side(size, small, repeats, args.png_encoder, args.comfyui_url, args.comfyui_dir)
    )
    print_side_by_side(rig, size, small, repeats)
    print()
    formats = bench_handover_formats(encode_size, repeats)
    print_formats_and_encode(formats, bench_one_encode(encode_size, repeats), encode_size, repeats)
    print()
    notes: list[str] = []
    results = bench_encoders(encode_size, repeats, notes)
    print_encoders(results, encode_size, repeats, args.max_size_ratio)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
