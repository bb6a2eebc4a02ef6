"""Build-time self-test: every enabled workflow through the real pipeline, on the baked weights,
on synthetic product photos with known ground truth. Exit 1 when any output is wrong (the image
build then fails).

The mask-based types run the quality suite's own cases, checks and thresholds
(handler/quality/): each served segmenter on the scenes of its cases (BiRefNet, slow on a build
machine's CPU, on the first two scenes of each). object_remove must change no pixel outside the
dilated mask; upscale_2k must hit the exact target long edge.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from handler import logs
from handler.gpu_check import check_gpu
from handler.pipeline import WorkerContext, run_job
from handler.quality import checks
from handler.quality.cases import cases_for
from handler.quality.scenes import scene
from handler.runtime import StartupError, WorkerRuntime
from handler.settings import Settings

# BiRefNet (1024², Swin-L) runs on the build machine's CPU: two scenes per case.
BIREFNET_SCENES_PER_CASE = 2


@dataclass(frozen=True)
class Case:
    job_type: str
    params: dict[str, Any]
    scenes: tuple[str, ...] = ("amber_bottle",)


# The types whose output has no mask to score: checked by what they must never get wrong.
PLAIN_CASES = (
    Case(
        "object_remove",
        {"regions": [{"kind": "rect", "x": 200, "y": 40, "w": 80, "h": 60}], "dilate": 8},
    ),
    Case("upscale_2k", {"target": 2048}),
)


def selftest_cases(segmenters: Sequence[str]) -> list[Case]:
    """The plain cases, then the quality cases of each served segmenter."""
    cases = list(PLAIN_CASES)
    for segmenter in segmenters:
        per_case = BIREFNET_SCENES_PER_CASE if segmenter == "birefnet" else None
        cases += [
            Case(case.job_type, case.params, tuple(case.scenes))
            for case in cases_for(segmenter, scenes_per_case=per_case)
        ]
    return cases


def plain_problems(case: Case, source: Image.Image, out: Image.Image) -> list[str]:
    """Problems with an object_remove or upscale_2k output. Pure, so it is unit-tested."""
    if case.job_type == "upscale_2k":
        target = case.params["target"]
        if max(out.size) != target:
            return [f"upscale_2k: long edge {max(out.size)} != {target}"]
        return []
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
    return [f"object_remove: {changed} pixels outside the mask changed"] if changed else []


def check_case(case: Case, outputs: list[Image.Image]) -> list[str]:
    """Every problem with a case's outputs (one per scene, in order)."""
    return assess_case(case, outputs)[0]


def assess_case(
    case: Case, outputs: list[Image.Image]
) -> tuple[list[str], dict[str, checks.Measures]]:
    """(problems, measures by scene) of a case's outputs; the plain cases have no measures."""
    if len(outputs) != len(case.scenes):
        return [f"{case.job_type}: {len(outputs)} outputs for {len(case.scenes)} inputs"], {}
    problems: list[str] = []
    measures: dict[str, checks.Measures] = {}
    for name, out in zip(case.scenes, outputs, strict=True):
        drawn = scene(name)
        if case.job_type in ("object_remove", "upscale_2k"):
            problems += plain_problems(case, drawn.image, out)
            continue
        measured = checks.measure_output(case.job_type, out, drawn)
        problems += checks.problems_in(case.job_type, case.params, drawn, out, measured)
        measures[name] = {k: round(v, 4) for k, v in measured.items()}
    return problems, measures


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


async def run_cases(
    ctx: WorkerContext, base_url: str, store: dict[str, bytes], cases: list[Case]
) -> list[str]:
    problems: list[str] = []
    key = base64.b64encode(os.urandom(32)).decode()
    for case in cases:
        if case.job_type not in ctx.registry:
            continue
        job_id = str(uuid.uuid4())
        result = await run_job(
            ctx,
            {
                "job_id": job_id,
                "type": case.job_type,
                "params": {"v": 1, **case.params},
                "inputs": [{"url": _png_data_uri(scene(name).image)} for name in case.scenes],
                "output_prefix": f"{base_url}/{job_id}/",
                "auth": {"callback_hmac": key},
                "timeout_s": 3600,
            },
        )
        label = f"{case.job_type} ({case.params.get('segmenter', '-')})"
        if result["status"] != "SUCCEEDED":
            problems.append(f"{label}: {result['error_code']}: {result['error']}")
            continue
        outputs: list[Image.Image] = []
        for output in result["outputs"]:
            data = store[f"/{job_id}/{output['url'].rsplit('/', 1)[-1]}"]
            with Image.open(io.BytesIO(data)) as out:
                out.load()
                outputs.append(out)
        found, measures = assess_case(case, outputs)
        problems += [f"{label}: {problem}" for problem in found]
        print(
            json.dumps(
                {
                    "type": case.job_type,
                    "segmenter": case.params.get("segmenter"),
                    "scenes": list(case.scenes),
                    "ok": not found,
                    "models": [m["name"] for m in result["metrics"]["models"]],
                    "measures": measures,
                    "seconds": result["metrics"]["timings"],
                }
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
            cases = selftest_cases(settings.segmenters)
            problems = runtime.call(run_cases(ctx, base_url, store, cases))
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
