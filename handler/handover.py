"""Hand a job's pixels to ComfyUI and take its outputs back, as raw .npy (handler/rawpixels.py).

- `FileHandover`: the worker and ComfyUI share a filesystem (the image, or an attached ComfyUI
  whose COMFYUI_INPUT_DIR / COMFYUI_OUTPUT_DIR are set). Inputs are written straight into the
  run's input folder and outputs read straight from its output folder: no HTTP, no copy, no
  size limit beyond the input caps.
- `HttpHandover`: any other attached ComfyUI. Inputs go through POST /upload/image, split into
  parts below ComfyUI's upload limit (--max-upload-size, 100 MB by default) so every input
  within the caps fits; outputs come back through GET /view.

Both keep files in the job's own run folder, which the pipeline deletes after every job.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from handler import rawpixels
from handler.comfy.client import ComfyClient, ImageRef
from handler.errors import ErrorCode, JobError

HandoverMode = Literal["auto", "file", "http"]
# Room for the multipart envelope around each part, inside ComfyUI's request size limit.
MULTIPART_MARGIN = 64 * 1024
MAX_PARTS = 64  # the node's limit


@dataclass(frozen=True)
class InputRef:
    """What SimplyPNGLoadRaw needs: the file name relative to the input folder, and its parts."""

    name: str
    parts: int = 1


class Handover(Protocol):
    kind: str

    async def send(self, pixels: np.ndarray, run_folder: str, filename: str) -> InputRef: ...

    async def fetch(self, ref: ImageRef, run_folder: str) -> np.ndarray | bytes:
        """Raw pixels, or the encoded bytes of a file another save node wrote (e.g. a PNG)."""
        ...


def _inside(base: Path, *parts: str) -> Path:
    """base/parts..., refusing anything that would leave `base` (names come from ComfyUI)."""
    path = (base.joinpath(*parts)).resolve()
    if os.path.commonpath((base.resolve(), path)) != str(base.resolve()):
        raise JobError(ErrorCode.NODE_ERROR, "the workflow reported an output outside its folder")
    return path


def _check_ref(ref: ImageRef, run_folder: str) -> None:
    if ref.type != "output" or os.path.normpath(ref.subfolder) != os.path.normpath(run_folder):
        raise JobError(ErrorCode.NODE_ERROR, "the workflow saved an output outside this job")


class FileHandover:
    kind = "file"

    def __init__(self, input_dir: Path, output_dir: Path):
        self.input_dir = input_dir
        self.output_dir = output_dir

    async def send(self, pixels: np.ndarray, run_folder: str, filename: str) -> InputRef:
        folder = _inside(self.input_dir, run_folder)
        path = folder / filename

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            rawpixels.write(path, pixels)

        await asyncio.to_thread(write)
        return InputRef(f"{run_folder}/{filename}")

    async def fetch(self, ref: ImageRef, run_folder: str) -> np.ndarray | bytes:
        _check_ref(ref, run_folder)
        path = _inside(self.output_dir, ref.subfolder, ref.filename)
        if path.suffix == ".npy":
            return await asyncio.to_thread(rawpixels.read, path)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError:
            raise JobError(ErrorCode.NODE_ERROR, f"output {ref.filename!r} is missing") from None


def split(data: bytes, part_bytes: int) -> list[memoryview]:
    """`data` cut into pieces of at most part_bytes (one piece when it fits)."""
    view = memoryview(data)
    return [view[i : i + part_bytes] for i in range(0, max(1, len(data)), part_bytes)]


class HttpHandover:
    kind = "http"

    def __init__(self, comfy: ComfyClient, max_upload_bytes: int):
        self.comfy = comfy
        self.part_bytes = max(MULTIPART_MARGIN, max_upload_bytes - MULTIPART_MARGIN)

    async def send(self, pixels: np.ndarray, run_folder: str, filename: str) -> InputRef:
        data = await asyncio.to_thread(rawpixels.to_bytes, pixels)
        pieces = split(data, self.part_bytes)
        if len(pieces) > MAX_PARTS:
            raise JobError(
                ErrorCode.INPUT_TOO_LARGE,
                f"the input needs {len(pieces)} uploads of {self.part_bytes} bytes; "
                f"at most {MAX_PARTS} fit (raise ComfyUI's --max-upload-size)",
            )
        if len(pieces) == 1:
            name = await self.comfy.upload_image(data, filename, run_folder)
            return InputRef(name)
        for index, piece in enumerate(pieces):
            await self.comfy.upload_image(bytes(piece), f"{filename}.part{index:03d}", run_folder)
        return InputRef(f"{run_folder}/{filename}", len(pieces))

    async def fetch(self, ref: ImageRef, run_folder: str) -> np.ndarray | bytes:
        _check_ref(ref, run_folder)
        data = await self.comfy.download_output(ref)
        if rawpixels.is_raw(data):
            return await asyncio.to_thread(rawpixels.from_bytes, data)
        return data


def make_handover(
    mode: HandoverMode,
    comfy: ComfyClient,
    input_dir: Path | None,
    output_dir: Path | None,
    max_upload_bytes: int,
) -> Handover:
    """The file hand-over when ComfyUI's folders are known (or demanded), else HTTP."""
    folders_known = input_dir is not None and output_dir is not None
    if mode == "file" and not folders_known:
        raise ValueError(
            "COMFYUI_HANDOVER=file needs ComfyUI's folders: set COMFYUI_DIR, or "
            "COMFYUI_INPUT_DIR and COMFYUI_OUTPUT_DIR for an attached ComfyUI"
        )
    if mode != "http" and input_dir is not None and output_dir is not None:
        return FileHandover(input_dir, output_dir)
    return HttpHandover(comfy, max_upload_bytes)
