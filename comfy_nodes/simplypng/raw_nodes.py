"""Load and save nodes for raw pixels (.npy, see raw_pixels.py): no zlib on either side.

`SimplyPNGLoadRaw` has LoadImage's outputs (IMAGE as RGB, MASK as 1 - alpha, or ComfyUI's
64x64 zero placeholder when there is no alpha), so the graphs wire it exactly as they did
LoadImage. `SimplyPNGSaveRaw` is an output node like SaveImage: it reports its files under
`ui.images`, which /history and the worker read, and it names them with ComfyUI's own
`folder_paths.get_save_image_path`, so a prefix can never leave the output folder.

The float -> uint8 conversion runs on the device the image is on (the model's, on a GPU), so
only the 8-bit pixels cross to the host.

`SimplyPNGLoadPixels` / `SimplyPNGSavePixels` carry the 8-bit pixels themselves (type
SIMPLYPNG_PIXELS, a uint8 HxWxC tensor) for graphs that change no pixel value, such as
jpeg_to_png with `transparent: none`: converting 4 MP to float and back would be most of
such a job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .raw_pixels import MAX_PARTS, RawPixelsError, part_paths, read_pixels, write_pixels
from .widgets import InputTypes, combo, int_input, link, string_input

CATEGORY = "SimplyPNG"
PIXELS = "SIMPLYPNG_PIXELS"  # a uint8 BxHxWx3/4 tensor
PLACEHOLDER_MASK = 64  # LoadImage's MASK when the image has no alpha


def _input_path(name: str) -> Path:
    import folder_paths  # ComfyUI's module: importable only inside ComfyUI (or its double)

    return Path(folder_paths.get_annotated_filepath(name))


def _intermediate_device() -> torch.device:
    from comfy import model_management

    return torch.device(model_management.intermediate_device())


def to_float(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [B]xHxWxC -> (IMAGE BxHxWx3, MASK Bxhxw) in ComfyUI's conventions.

    Without alpha the MASK is LoadImage's 1x64x64 zero placeholder (broadcast over a batch).
    """
    batch = pixels if pixels.ndim == 4 else pixels.unsqueeze(0)
    rgb = batch[..., :3].to(torch.float32).div_(255.0)
    if batch.shape[-1] == 4:
        return rgb, 1.0 - batch[..., 3].to(torch.float32).div_(255.0)
    return rgb, torch.zeros((1, PLACEHOLDER_MASK, PLACEHOLDER_MASK), dtype=torch.float32)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """One HxWxC float image in 0..1 -> uint8 on its own device, rounded half up.

    Rounding (not SaveImage's truncation) keeps a value like 0.99999994 at 255; +0.5 then
    truncation is one pass fewer than round().
    """
    return image.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)


def with_alpha(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 HxWx4: RGB gets an opaque alpha channel, RGBA is returned as it is."""
    if pixels.shape[2] == 4:
        return pixels
    out = torch.empty((*pixels.shape[:2], 4), dtype=torch.uint8, device=pixels.device)
    out[..., :3] = pixels
    out[..., 3] = 255
    return out


def _save_path(prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    import folder_paths

    folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_output_directory(), width, height
    )
    return Path(folder), stem, counter, subfolder


def _write(arrays: list[torch.Tensor], prefix: str) -> dict[str, Any]:
    """Each uint8 HxWxC tensor as one .npy in the output folder; SaveImage's ui answer."""
    height, width = int(arrays[0].shape[0]), int(arrays[0].shape[1])
    folder, stem, counter, subfolder = _save_path(prefix, width, height)
    results = []
    for pixels in arrays:
        name = f"{stem}_{counter:05}_.npy"
        write_pixels(folder / name, pixels.cpu().numpy())
        results.append({"filename": name, "subfolder": subfolder, "type": "output"})
        counter += 1
    return {"ui": {"images": results}}


class _RawLoader:
    """What both loaders share: the file inputs, their validation and change detection."""

    CATEGORY = CATEGORY
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                # A plain string, not a file list: the input folder may hold many job files.
                "image": string_input("", tooltip="A .npy file in the input folder."),
                "parts": int_input(1, 1, MAX_PARTS, tooltip="Number of uploaded parts."),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, image: str, parts: int) -> bool | str:
        if not image:
            return "no raw image file given"
        try:
            paths = part_paths(_input_path(image), parts)
        except RawPixelsError as exc:
            return str(exc)
        missing = [p.name for p in paths if not p.is_file()]
        return f"Invalid raw image file: {missing[0]}" if missing else True

    @classmethod
    def IS_CHANGED(cls, image: str, parts: int) -> str:
        # Names are unique per run, so size and mtime identify a file without hashing it.
        stats = []
        for path in part_paths(_input_path(image), parts):
            try:
                stat = os.stat(path)
            except OSError:
                return "missing"
            stats.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        return ",".join(stats)


class SimplyPNGLoadRaw(_RawLoader):
    """Load a raw pixel file (or its parts) from the input folder, like LoadImage."""

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")

    def run(self, image: str, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(read_pixels(_input_path(image), parts))
        rgb, mask = to_float(pixels)
        device = _intermediate_device()
        return rgb.to(device), mask.to(device)


class SimplyPNGLoadPixels(_RawLoader):
    """Load a raw pixel file as 8-bit pixels (RGB or RGBA as handed over), no conversion."""

    RETURN_TYPES = (PIXELS,)
    RETURN_NAMES = ("pixels",)

    def run(self, image: str, parts: int) -> tuple[torch.Tensor]:
        pixels = torch.from_numpy(read_pixels(_input_path(image), parts))
        return (pixels if pixels.ndim == 4 else pixels.unsqueeze(0),)


class _RawSaver:
    """An output node, as SaveImage: it returns no sockets, only its files under `ui`."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES: tuple[str, ...] = ()
    OUTPUT_NODE = True


class SimplyPNGSaveRaw(_RawSaver):
    """Save images as raw pixel files in the output folder, like SaveImage (no metadata)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": link("IMAGE", "RGB, or RGBA with straight alpha."),
                "filename_prefix": string_input("simplypng"),
            }
        }

    def run(self, images: torch.Tensor, filename_prefix: str) -> dict[str, Any]:
        return _write([to_uint8(image) for image in images], filename_prefix)


class SimplyPNGSavePixels(_RawSaver):
    """Save 8-bit pixels as a raw file; `alpha: add` makes RGB into opaque RGBA first."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "pixels": link(PIXELS),
                "alpha": combo(["keep", "add"], "keep", tooltip="add: RGB becomes opaque RGBA."),
                "filename_prefix": string_input("simplypng"),
            }
        }

    def run(self, pixels: torch.Tensor, alpha: str, filename_prefix: str) -> dict[str, Any]:
        return _write([with_alpha(p) if alpha == "add" else p for p in pixels], filename_prefix)


NODE_CLASS_MAPPINGS = {
    cls.__name__: cls
    for cls in (SimplyPNGLoadRaw, SimplyPNGSaveRaw, SimplyPNGLoadPixels, SimplyPNGSavePixels)
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SimplyPNGLoadRaw": "SimplyPNG Load Raw Pixels",
    "SimplyPNGSaveRaw": "SimplyPNG Save Raw Pixels",
    "SimplyPNGLoadPixels": "SimplyPNG Load 8-bit Pixels",
    "SimplyPNGSavePixels": "SimplyPNG Save 8-bit Pixels",
}
