"""Warm-up: one small prompt per enabled type so models are loaded before the first job."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from handler.comfy.client import ComfyClient
from handler.handover import Handover
from handler.params import param_names, validate_params
from handler.workflows import Binding, build_prompt

log = logging.getLogger(__name__)

WARMUP_PARAMS: dict[str, dict[str, object]] = {
    "object_remove": {"regions": [{"kind": "rect", "x": 24, "y": 24, "w": 16, "h": 16}]},
}


def warmup_image(size: int = 64) -> Image.Image:
    """A subject-like disc on a flat background: enough for every workflow to run."""
    image = Image.new("RGB", (size, size), (240, 240, 240))
    ImageDraw.Draw(image).ellipse(
        (size // 4, size // 4, 3 * size // 4, 3 * size // 4), (200, 30, 30)
    )
    return image


def warmup_runs(
    registry: dict[str, Binding], segmenters: Sequence[str]
) -> list[tuple[str, dict[str, object]]]:
    """(type, params) to run: each type once, and each served segmenter at least once.

    A type with a segmenter param warms the first served one; the other served segmenters
    get one run each of the first such type, so no model is loaded by a customer's job.
    """
    runs: list[tuple[str, dict[str, object]]] = []
    extra = list(segmenters[1:])
    for job_type in registry:
        params = dict(WARMUP_PARAMS.get(job_type, {}))
        if "segmenter" in param_names(job_type):
            runs.append((job_type, {**params, "segmenter": segmenters[0]}))
            runs += [(job_type, {**params, "segmenter": name}) for name in extra]
            extra = []
        else:
            runs.append((job_type, params))
    return runs


async def warm_up(
    comfy: ComfyClient,
    handover: Handover,
    registry: dict[str, Binding],
    timeout_s: float,
    segmenters: Sequence[str] = ("birefnet",),
) -> dict[str, float]:
    """Run the warm-up prompts; returns seconds per type. Raises JobError on failure."""
    seconds: dict[str, float] = {}
    pixels = np.asarray(warmup_image())
    for job_type, raw in warmup_runs(registry, segmenters):
        started = time.perf_counter()
        folder = f"simplypng/warmup-{uuid.uuid4()}"
        image = await handover.send(pixels, folder, "in_00.npy")
        params = validate_params(job_type, raw)
        prompt = build_prompt(
            registry[job_type], params, image=image, mask=None, output_prefix=f"{folder}/out"
        )
        await comfy.run_prompt(prompt, timeout_s=timeout_s)
        took = round(time.perf_counter() - started, 3)
        seconds[job_type] = round(seconds.get(job_type, 0.0) + took, 3)
        log.info(
            "warm-up done",
            extra={"type": job_type, "segmenter": raw.get("segmenter"), "seconds": took},
        )
    return seconds
