"""Worker handler benchmarks; prints medians and p90 over --repeats runs.

1. Handler overhead per job: `handler.pipeline.run_job` end to end for a jpeg_to_png job (core
   nodes only, near-zero compute) against the ComfyUI test double, with the input JPEG served
   by a loopback HTTP server, the output stored in moto's S3 server and a signed callback to a
   loopback receiver. The overhead is the job's wall time minus `execute` (ComfyUI's own run
   time, excluded), split per stage.
2. PNG encoders: each `handler.outputs.encode_png` option, WebP lossless and JPEG q92 on a
   deterministic 2048x2048 RGBA cutout, compared with Pillow's default zlib level 6.

Variants are interleaved within each repeat (sizes, encoders), so a noisy machine slows all of
them alike.

  python scripts/bench_handler.py                     # 1 MP and 4 MP, 5 repeats
  python scripts/bench_handler.py --sizes 1024 --repeats 9
  python scripts/bench_handler.py --png-encoders pillow-fast,fpng   # pipeline encoders side by side
  python scripts/bench_handler.py --quick             # tiny sizes, 1 repeat (smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handler.comfy.client import ComfyClient, ImageRef, PromptResult  # noqa: E402
from handler.inputs import input_s3_client_factory  # noqa: E402
from handler.models_lock import ModelsLock  # noqa: E402
from handler.outputs import encode_jpeg, encode_png, encode_webp, sanitize  # noqa: E402
from handler.pipeline import WorkerContext, run_job  # noqa: E402
from handler.settings import Settings  # noqa: E402
from handler.storage import make_s3_client, output_s3_client_factory  # noqa: E402
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
    ("download", "input GET + decode (pipeline timer)"),
    ("queue", "PNG for ComfyUI + POST /upload/image + POST /prompt to execution_start"),
    ("prompt_rest", "rest of run_prompt: websocket connect/close, result handling"),
    ("fetch_output", "GET /view of the output (not in the pipeline timer)"),
    ("encode", "sanitize + encode (pipeline timer)"),
    ("upload", "output PUT to S3 (moto in this process), with a new boto3 client per job"),
    ("callback", "sign + POST the callback (the pipeline's 'job finished' log timings)"),
    ("other", "validation, clean-up, result building: overhead minus the rows above"),
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
    texture = sum(
        amplitude * _upsampled_noise(rng, width, height, cell)
        for cell, amplitude in ((256, 18.0), (64, 10.0), (16, 6.0), (4, 4.0))
    )
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


# --- 1. handler overhead ----------------------------------------------------------------------


class TimedComfyClient(ComfyClient):
    """The real ComfyClient, also timing the calls whose wall time metrics.timings leaves out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    async def run_prompt(self, prompt: dict[str, Any], **kwargs: Any) -> PromptResult:
        started = time.perf_counter()
        result = await super().run_prompt(prompt, **kwargs)
        inside = result.timings.get("queue_s", 0.0) + result.timings.get("execute_s", 0.0)
        self._add("prompt_rest", time.perf_counter() - started - inside)
        return result

    async def download_output(self, ref: ImageRef) -> bytes:
        started = time.perf_counter()
        data = await super().download_output(ref)
        self._add("fetch_output", time.perf_counter() - started)
        return data


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


Variant = tuple[int, str]  # (square side, PNG encoder)


@dataclass
class Rig:
    """The servers around the worker for one benchmark run."""

    contexts: dict[str, WorkerContext]  # per PNG encoder; the servers are shared
    comfy: TimedComfyClient
    web: LoopbackHTTPServer
    bucket: str
    finished: FinishedJobs
    jobs: int = 0
    samples: dict[Variant, dict[str, list[float]]] = field(default_factory=dict)
    s3_client: list[float] = field(default_factory=list)


def bench_settings(s3: MotoS3) -> Settings:
    return s3.settings(
        url_allowlist=["127.0.0.0/8"],  # inputs and callbacks are on loopback here
        allow_http_inputs=True,
        enabled_types=[JOB_TYPE],
    )


async def run_one(rig: Rig, variant: Variant) -> dict[str, float]:
    """One job of a size x size JPEG; returns its seconds per stage, overhead and wall."""
    size, png_encoder = variant
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
    result = await run_job(rig.contexts[png_encoder], job)
    wall = time.perf_counter() - started
    rig.jobs += 1
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"benchmark job failed: {result['error_code']}: {result['error']}")
    timings = rig.finished.timings
    if timings is None:
        raise RuntimeError("the pipeline logged no 'job finished' record with timings")
    row = {name: float(timings.get(name, 0.0)) for name in ("download", "queue", "encode")}
    row.update({name: float(timings.get(name, 0.0)) for name in ("upload", "callback")})
    row.update({"prompt_rest": 0.0, "fetch_output": 0.0})
    row.update(rig.comfy.seconds)
    execute = float(timings.get("execute", 0.0))
    overhead = wall - execute
    row["other"] = overhead - sum(row[name] for name, _ in STAGES if name != "other")
    row.update(overhead=overhead, execute=execute, wall=wall)
    return row


def time_s3_client(settings: Settings) -> float:
    """Seconds to build a boto3 client (the worker builds one per process and reuses it)."""
    started = time.perf_counter()
    make_s3_client(
        settings,
        max_attempts=1,
        connect_timeout=settings.fetch_connect_timeout_s,
        read_timeout=settings.upload_timeout_s,
    )
    return time.perf_counter() - started


async def bench_overhead(rig: Rig, variants: list[Variant], repeats: int) -> None:
    for size in dict.fromkeys(size for size, _ in variants):
        rig.web.route("GET", f"/in/{size}.jpg", Reply.ok(photo_jpeg(size), "image/jpeg"))
    for variant in variants:
        await run_one(rig, variant)  # warm-up: first-use imports and connections, not timed
        rig.samples[variant] = {}
    settings = next(iter(rig.contexts.values())).settings
    for repeat in range(repeats):
        for variant in rotated(variants, repeat):
            for name, seconds in (await run_one(rig, variant)).items():
                rig.samples[variant].setdefault(name, []).append(seconds)
        rig.s3_client.append(time_s3_client(settings))
    delivered = len(rig.web.requests_for("POST", "/hook"))
    if delivered != rig.jobs:
        raise RuntimeError(f"{rig.jobs} jobs ran but {delivered} callbacks arrived")


async def overhead_samples(sizes: list[int], encoders: list[str], repeats: int) -> Rig:
    with tempfile.TemporaryDirectory(prefix="bench_handler_") as tmp, ExitStack() as stack:
        s3 = stack.enter_context(moto_s3_server())
        double = stack.enter_context(serve_in_thread(ComfyDouble(Path(tmp) / "comfy")))
        web = stack.enter_context(LoopbackHTTPServer())
        web.route("POST", "/hook", Reply(204))
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
        settings = bench_settings(s3)
        comfy = TimedComfyClient(double.base_url, idle_timeout_s=settings.comfyui_idle_timeout_s)
        ctx = WorkerContext(
            settings=settings,
            comfy=comfy,
            registry=load_registry(settings.workflows_dir, [JOB_TYPE]),
            http=make_http_client(settings),
            callback_http=httpx.AsyncClient(),
            models=ModelsLock.load(settings.models_lock),
            s3_inputs=input_s3_client_factory(settings),
            s3_outputs=output_s3_client_factory(settings),
            comfyui_version=await comfy.comfyui_version(),
            input_dir=double.input_dir,
            output_dir=double.output_dir,
        )
        contexts = {
            name: replace(ctx, settings=settings.model_copy(update={"png_encoder": name}))
            for name in encoders
        }
        finished = FinishedJobs()
        pipeline_log = logging.getLogger("handler.pipeline")
        pipeline_log.addHandler(finished)
        pipeline_log.setLevel(logging.INFO)
        pipeline_log.propagate = False  # keep per-job INFO lines out of the printed table
        rig = Rig(contexts, comfy, web, s3.create_bucket("bench-handler"), finished)
        variants = [(size, name) for size in sizes for name in encoders]
        try:
            await bench_overhead(rig, variants, repeats)
        finally:
            pipeline_log.removeHandler(finished)
            pipeline_log.propagate = True
            await ctx.http.aclose()
            await ctx.callback_http.aclose()
            await comfy.aclose()
        return rig


def print_overhead(rig: Rig, repeats: int) -> None:
    samples = rig.samples
    sizes = list(samples)
    encoders = list(dict.fromkeys(name for _, name in sizes))
    print(f"Handler overhead per {JOB_TYPE} job, ms: median / p90 of {repeats}")
    print(
        f"(pipeline PNG encoder: {', '.join(encoders)}; 'execute' is ComfyUI's own time, EXCLUDED)"
    )
    labels = [f"{side}x{side}" + (f" {name}" if len(encoders) > 1 else "") for side, name in sizes]
    width = max(20, *(len(label) + 2 for label in labels))
    print("stage".ljust(22) + "".join(label.rjust(width) for label in labels))
    rows = [name for name, _ in STAGES] + ["overhead", "execute", "wall"]
    labels = {"overhead": "OVERHEAD=wall-execute", "execute": "execute (excluded)"}
    for name in rows:
        cells = "".join(
            f"{median(samples[s][name]) * 1000:9.1f} /{p90(samples[s][name]) * 1000:8.1f}".rjust(
                width
            )
            for s in sizes
        )
        print(labels.get(name, name).ljust(22) + cells)
    client = rig.s3_client
    print(
        f"S3 client creation (built once per worker and reused, not in 'upload'): "
        f"{median(client) * 1000:.1f} / {p90(client) * 1000:.1f} ms"
    )
    print("where:")
    for name, meaning in STAGES:
        print(f"  {name:<13}{meaning}")


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


def parse_encoders(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in PNG_OPTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PNG_OPTIONS)}: {unknown}")
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, help="square input sides, e.g. 1024,2048 (default)"
    )
    parser.add_argument("--repeats", type=int, help="timed runs per variant (default 5)")
    parser.add_argument("--encode-size", type=int, help="cutout side for encoders (2048)")
    parser.add_argument(
        "--png-encoders",
        type=parse_encoders,
        default=[Settings.model_fields["png_encoder"].default],
        help="PNG encoders for the end-to-end jobs, e.g. pillow-fast,fpng (default: settings')",
    )
    parser.add_argument(
        "--max-size-ratio",
        type=float,
        default=1.25,
        help="largest file, vs Pillow level 6, a recommended PNG default may write (1.25)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat (smoke test)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([128] if args.quick else [1024, 2048])
    repeats = args.repeats or (1 if args.quick else 5)
    encode_size = args.encode_size or (256 if args.quick else 2048)
    if repeats < 1 or encode_size < 16 or not args.max_size_ratio >= 1:
        parser.error("needs --repeats >= 1, --encode-size >= 16, --max-size-ratio >= 1")
    logging.basicConfig(level=logging.WARNING)

    rig = asyncio.run(overhead_samples(sizes, args.png_encoders, repeats))
    print_overhead(rig, repeats)
    print()
    notes: list[str] = []
    results = bench_encoders(encode_size, repeats, notes)
    print_encoders(results, encode_size, repeats, args.max_size_ratio)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
