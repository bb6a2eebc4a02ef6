"""Warm-up: one small prompt per enabled type so models are loaded before the first job."""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
from PIL import Image, ImageDraw

from handler.comfy.client import ComfyClient
from handler.handover import Handover
from handler.params import validate_params
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


async def warm_up(
    comfy: ComfyClient, handover: Handover, registry: dict[str, Binding], timeout_s: float
) -> dict[str, float]:
    """Run each type once; returns seconds per type. Raises JobError on failure."""
    seconds: dict[str, float] = {}
    pixels = np.asarray(warmup_image())
    for job_type, binding in registry.items():
        started = time.perf_counter()
        folder = f"simplypng/warmup-{uuid.uuid4()}"
        image = await handover.send(pixels, folder, "in_00.npy")
        params = validate_params(job_type, WARMUP_PARAMS.get(job_type, {}))
        prompt = build_prompt(
            binding, params, image=image, mask=None, output_prefix=f"{folder}/out"
        )
        await comfy.run_prompt(prompt, timeout_s=timeout_s)
        seconds[job_type] = round(time.perf_counter() - started, 3)
        log.info("warm-up done", extra={"type": job_type, "seconds": seconds[job_type]})
    return seconds
