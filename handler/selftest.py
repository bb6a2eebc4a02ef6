"""Build-time self-test: every enabled workflow through the real pipeline on synthetic images
with known ground truth. Exit 1 when any output is wrong (the image build then fails).

Checks: a synthetic subject's mask has IoU >= 0.9; cutouts are tight; e-commerce backgrounds
are pure white; upscales are exactly the target size; inpainting changes no pixel outside the
dilated mask; jpeg_to_png gives RGBA.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from handler import logs
from handler.gpu_check import check_gpu
from handler.pipeline import WorkerContext, run_job
from handler.runtime import StartupError, WorkerRuntime
from handler.settings import Settings

MIN_IOU = 0.9
SIZE = 512


def synthetic_product(size: int = SIZE) -> tuple[Image.Image, np.ndarray]:
    """A shaded product-like object on a plain studio background, and its true mask."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cx, cy, rx, ry = size * 0.5, size * 0.55, size * 0.22, size * 0.3
    body = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    neck = (np.abs(xx - cx) <= size * 0.06) & (yy >= size * 0.12) & (yy <= cy)
    mask = body | neck
    background = np.dstack([np.full_like(xx, 236), np.full_like(xx, 238), np.full_like(xx, 241)])
    shade = 0.55 + 0.45 * np.clip(1.0 - (xx - cx + rx * 0.4) / (2.2 * rx), 0, 1)
    colour = np.dstack([30 + 170 * shade, 80 * shade, 40 + 60 * shade])
    pixels = np.where(mask[..., None], colour, background)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def alpha_mask(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))[..., 3] > 127


@dataclass(frozen=True)
class Case:
    job_type: str
    params: dict[str, Any]


CASES = (
    Case("bg_remove", {"halo": 2}),
    Case("cutout_subject", {"padding": 0, "padding_unit": "px", "min_region": 64}),
    Case("white_bg_ecomm", {"fill": 0.85, "canvas_width": 1000, "canvas_height": 1000}),
    Case(
        "object_remove",
        {"regions": [{"kind": "rect", "x": 200, "y": 40, "w": 80, "h": 60}], "dilate": 8},
    ),
    Case("upscale_2k", {"target": 2048}),
    Case("jpeg_to_png", {"transparent": "subject"}),
)


def check_output(case: Case, source: Image.Image, truth: np.ndarray, out: Image.Image) -> list[str]:
    """Problems with one output; empty when it is right. Pure, so it is unit-tested."""
    problems: list[str] = []
    kind = case.job_type
    if kind in ("bg_remove", "jpeg_to_png"):
        if out.mode != "RGBA" or out.size != source.size:
            return [f"{kind}: expected RGBA {source.size}, got {out.mode} {out.size}"]
        score = iou(alpha_mask(out), truth)
        if score < MIN_IOU:
            problems.append(f"{kind}: mask IoU {score:.3f} < {MIN_IOU}")
    elif kind == "cutout_subject":
        ys, xs = np.nonzero(truth)
        expected = (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        got = out.size
        if (
            abs(got[0] - expected[0]) > 0.1 * expected[0]
            or abs(got[1] - expected[1]) > 0.1 * expected[1]
        ):
            problems.append(f"cutout_subject: crop {got} is not tight around {expected}")
        elif iou(alpha_mask(out), np.ones(out.size[::-1], bool)) < 0.3:
            problems.append("cutout_subject: the crop is mostly transparent")
    elif kind == "white_bg_ecomm":
        pixels = np.asarray(out.convert("RGB")).astype(int)
        want = (case.params["canvas_width"], case.params["canvas_height"])
        if out.size != want:
            problems.append(f"white_bg_ecomm: canvas {out.size} != {want}")
        elif not (pixels[:20, :, :] == 255).all() or not (pixels[:, :20, :] == 255).all():
            problems.append("white_bg_ecomm: background is not pure white (255,255,255)")
    elif kind == "upscale_2k":
        target = case.params["target"]
        if max(out.size) != target:
            problems.append(f"upscale_2k: long edge {max(out.size)} != {target}")
    elif kind == "object_remove":
        region = case.params["regions"][0]
        pad = case.params["dilate"] + 1
        before = np.asarray(source.convert("RGB"))
        after = np.asarray(out.convert("RGB"))
        if before.shape != after.shape:
            return [f"object_remove: size changed {source.size} -> {out.size}"]
        outside = np.ones(before.shape[:2], bool)
        outside[
            region["y"] - pad : region["y"] + region["h"] + pad,
            region["x"] - pad : region["x"] + region["w"] + pad,
        ] = False
        changed = int((before[outside] != after[outside]).any(axis=-1).sum())
        if changed:
            problems.append(f"object_remove: {changed} pixels outside the mask changed")
    return problems


class _Sink(BaseHTTPRequestHandler):
    store: dict[str, bytes]

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.store[self.path] = self.rfile.read(length)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@contextmanager
def output_sink() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback PUT receiver standing in for a signed output prefix."""
    store: dict[str, bytes] = {}
    handler = type("Sink", (_Sink,), {"store": store})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store
    finally:
        server.shutdown()


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def run_cases(ctx: WorkerContext, base_url: str, store: dict[str, bytes]) -> list[str]:
    problems: list[str] = []
    key = base64.b64encode(os.urandom(32)).decode()
    for case in CASES:
        if case.job_type not in ctx.registry:
            continue
        source, truth = synthetic_product()
        job_id = str(uuid.uuid4())
        result = await run_job(
            ctx,
            {
                "job_id": job_id,
                "type": case.job_type,
                "params": {"v": 1, **case.params},
                "inputs": [{"url": _png_data_uri(source)}],
                "output_prefix": f"{base_url}/{job_id}/",
                "auth": {"callback_hmac": key},
                "timeout_s": 1800,
            },
        )
        if result["status"] != "SUCCEEDED":
            problems.append(f"{case.job_type}: {result['error_code']}: {result['error']}")
            continue
        data = store[f"/{job_id}/{result['outputs'][0]['url'].rsplit('/', 1)[-1]}"]
        with Image.open(io.BytesIO(data)) as out:
            out.load()
            found = check_output(case, source, truth, out)
        problems += found
        print(
            json.dumps(
                {"type": case.job_type, "ok": not found, "seconds": result["metrics"]["timings"]}
            ),
            flush=True,
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    base = Settings.from_env()
    logs.configure(base.log_level)
    if not check_gpu().ok and "--cpu" not in base.comfyui_extra_args:
        # Image builds have no GPU: ComfyUI must be told, or it dies probing CUDA.
        base = base.model_copy(update={"comfyui_extra_args": [*base.comfyui_extra_args, "--cpu"]})
    with output_sink() as (base_url, store):
        settings = base.model_copy(
            update={
                "allow_http_inputs": True,
                "url_allowlist": ["127.0.0.1/32"],
                "warmup": False,
            }
        )
        runtime = WorkerRuntime(settings)
        try:
            ctx = runtime.start()
            problems = runtime.call(run_cases(ctx, base_url, store))
        except StartupError as exc:
            problems = [f"startup: {exc}"]
        finally:
            runtime.stop()
    for problem in problems:
        print(f"SELFTEST FAIL {problem}", file=sys.stderr)
    print("self-test " + ("failed" if problems else "passed"), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
