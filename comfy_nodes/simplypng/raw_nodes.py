"""Load and save nodes for raw pixels (.npy, see raw_pixels.py): no zlib on either side.

`SimplyPNGLoadRaw` has LoadImage's outputs (IMAGE as RGB, MASK as 1 - alpha, or ComfyUI's
64x64 zero placeholder when there is no alpha), so the graphs wire it exactly as they did
LoadImage. `SimplyPNGSaveRaw` is an output node like SaveImage: it reports its files under
`ui.images`, which /history and the worker read, and it names them with ComfyUI's own
`folder_paths.get_save_image_path`, so a prefix can never leave the output folder.

The float -> uint8 conversion runs on the device the image is on (the model's, on a GPU), so
only the 8-bit pixels cross to the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .raw_pixels import MAX_PARTS, RawPixelsError, part_paths, read_pixels, write_pixels
from .widgets import InputTypes, int_input, link, string_input

CATEGORY = "SimplyPNG"
PLACEHOLDER_MASK = 64  # LoadImage's MASK when the image has no alpha


def _input_path(name: str) -> Path:
    import folder_paths  # ComfyUI's module: importable only inside ComfyUI (or its double)

    return Path(folder_paths.get_annotated_filepath(name))


def _intermediate_device() -> torch.device:
    from comfy import model_management

    return torch.device(model_management.intermediate_device())


def to_float(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 HxWxC -> (IMAGE 1xHxWx3, MASK 1xhxw) in ComfyUI's conventions."""
    rgb = pixels[..., :3].to(torch.float32).div_(255.0).unsqueeze(0)
    if pixels.shape[2] == 4:
        mask = 1.0 - pixels[..., 3].to(torch.float32).div_(255.0)
    else:
        mask = torch.zeros((PLACEHOLDER_MASK, PLACEHOLDER_MASK), dtype=torch.float32)
    return rgb, mask.unsqueeze(0)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """One HxWxC float image in 0..1 -> uint8 on its own device, rounded to nearest.

    Rounding (not SaveImage's truncation) keeps a value like 0.99999994 at 255.
    """
    return image.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)


class SimplyPNGLoadRaw:
    """Load a raw pixel file (or its parts) from the input folder, like LoadImage."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")

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

    def run(self, image: str, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(read_pixels(_input_path(image), parts))
        rgb, mask = to_float(pixels)
        device = _intermediate_device()
        return rgb.to(device), mask.to(device)


class SimplyPNGSaveRaw:
    """Save images as raw pixel files in the output folder, like SaveImage (no metadata)."""

    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES: tuple[str, ...] = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": link("IMAGE", "RGB, or RGBA with straight alpha."),
                "filename_prefix": string_input("simplypng"),
            }
        }

    def run(self, images: torch.Tensor, filename_prefix: str) -> dict[str, Any]:
        import folder_paths

        output_dir = folder_paths.get_output_directory()
        height, width = int(images.shape[1]), int(images.shape[2])
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, width, height
        )
        results = []
        for image in images:
            name = f"{stem}_{counter:05}_.npy"
            write_pixels(Path(folder) / name, to_uint8(image).cpu().numpy())
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (SimplyPNGLoadRaw, SimplyPNGSaveRaw)}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SimplyPNGLoadRaw": "SimplyPNG Load Raw Pixels",
    "SimplyPNGSaveRaw": "SimplyPNG Save Raw Pixels",
}
