"""big-LaMa inpainting through spandrel, with a tiled fallback when memory runs out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .device import dtype_for, release_memory
from .errors import InferenceError, ModelFileError
from .lockfile import read_model_files, resolve_files

log = logging.getLogger(__name__)

MODEL_NAME = "big-lama"
MULTIPLE = 8  # LaMa downsamples 3 times
MIN_TILE = 128
TILE_OVERLAP = 32

MaskedModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (start, end) covering 0..length with `overlap` context on inner sides.

    Each span also names its core (core_start, core_end): the part written back. Cores tile
    the whole length without gaps, so every pixel comes from a window where it had context.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    step = tile - 2 * overlap
    starts = [*range(0, length - tile, step), length - tile]
    spans = []
    for start in starts:
        end = start + tile
        core_start = 0 if start == 0 else start + overlap
        core_end = length if end == length else end - overlap
        spans.append((start, end, core_start, core_end))
    return spans


class Inpainter:
    """Fills masked pixels with a loaded LaMa (kept resident between prompts).

    `model` takes 1x3xHxW and 1x1xHxW tensors in 0..1 on `device` / `dtype`; spandrel's
    descriptor pads to its size requirement (a multiple of 8, at least 16) with reflection
    and crops back, so any size is accepted.
    """

    def __init__(self, model: MaskedModel, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.device = device
        self.dtype = dtype

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """HxWx3 float in 0..1 and HxW mask ({0,1}; 1 = fill) -> HxWx3 float32 (host arrays)."""
        pixels = np.asarray(image)
        holes = np.asarray(mask)
        self._check(pixels.shape, holes.shape)
        result = self.inpaint_tensor(
            torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)),
            torch.from_numpy(holes > 0.5),
        )
        return result.cpu().numpy()

    def inpaint_tensor(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """HxWx3 float in 0..1 and HxW bool (True = fill) -> HxWx3 float32 on the model's device.

        What the nodes call: the pixels stay on the device from the crop to the paste-back.
        """
        self._check(tuple(image.shape), tuple(mask.shape))
        result = image.to(self.device, torch.float32).clamp(0.0, 1.0)
        holes = mask.to(self.device).bool()
        if not bool(holes.any()):  # one scalar sync: nothing to fill, no model run
            return result
        x = result.permute(2, 0, 1).unsqueeze(0)
        m = holes.to(torch.float32)[None, None]
        try:
            out = self._run(x, m)
        except torch.OutOfMemoryError:
            release_memory()
            log.warning("LaMa out of memory at %dx%d; retrying in tiles", x.shape[3], x.shape[2])
            out = self._run_tiled(x, m)
        return out[0].permute(1, 2, 0)

    @staticmethod
    def _check(image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
        if len(image_shape) != 3 or image_shape[2] != 3 or 0 in image_shape:
            raise ValueError(f"expected an HxWx3 image, got shape {image_shape}")
        if tuple(mask_shape) != tuple(image_shape[:2]):
            raise ValueError(f"mask shape {mask_shape} does not match image {image_shape[:2]}")

    def _run(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.to(self.device, self.dtype), m.to(self.device, self.dtype)).float()

    def _run_tiled(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        tile = max(MIN_TILE, (max(height, width) // 2) // MULTIPLE * MULTIPLE)
        while tile >= MIN_TILE:
            try:
                return self._tiled(x, m, tile)
            except torch.OutOfMemoryError:
                release_memory()
                tile = tile // 2 // MULTIPLE * MULTIPLE
        raise InferenceError(
            f"LaMa ran out of memory on {self.device} even in {MIN_TILE}px tiles "
            f"({width}x{height} input)"
        )

    def _tiled(self, x: torch.Tensor, m: torch.Tensor, tile: int) -> torch.Tensor:
        out = x.clone()
        overlap = min(TILE_OVERLAP, tile // 4)
        for y0, y1, cy0, cy1 in tile_spans(x.shape[2], tile, overlap):
            for x0, x1, cx0, cx1 in tile_spans(x.shape[3], tile, overlap):
                window = m[..., y0:y1, x0:x1]
                if not bool(window[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].any()):
                    continue  # no hole in this core: the input pixels stand
                filled = self._run(x[..., y0:y1, x0:x1], window)
                out[..., cy0:cy1, cx0:cx1] = filled[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        return out


def load_inpainter(
    models_dir: Path, lock_path: Path, verify_sha256: bool, device: torch.device
) -> Inpainter:
    """Check the pinned LaMa file and load it through spandrel onto `device`."""
    from spandrel import MaskedImageModelDescriptor, ModelLoader, UnsupportedModelError

    files = read_model_files(lock_path, MODEL_NAME)
    paths = resolve_files(models_dir, files, verify_sha256)
    weights = [paths[f.name] for f in files if f.role == "weights"]
    if len(weights) != 1:
        raise ModelFileError(f"models.lock must list exactly one weights file for {MODEL_NAME}")
    try:
        descriptor = ModelLoader(device="cpu").load_from_file(weights[0])
    except UnsupportedModelError as exc:
        raise ModelFileError(f"{weights[0]} is not a model spandrel recognises") from exc
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelFileError(f"cannot load {weights[0]}: {exc}") from exc
    if (
        not isinstance(descriptor, MaskedImageModelDescriptor)
        or descriptor.architecture.id != "LaMa"
    ):
        raise ModelFileError(f"{weights[0]} is a {descriptor.architecture.id} model, not LaMa")
    # LaMa does not support fp16 (spandrel marks it); bf16 works on GPUs that have it.
    dtype = dtype_for(device, "bf16") if descriptor.supports_bfloat16 else torch.float32
    descriptor.to(device).to(dtype).eval()
    log.info("loaded %s on %s as %s", MODEL_NAME, device, dtype)
    return Inpainter(descriptor, device, dtype)
