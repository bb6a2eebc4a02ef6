"""Raw pixel files between the worker and ComfyUI: 8-bit RGB/RGBA arrays in NumPy's .npy format.

The worker decodes each input once and hands ComfyUI the pixels; our save node hands them back
the same way, so neither side spends time on zlib (scripts/bench_handler.py measures .npy
against a level-0 PNG). A .npy file is a short text header (dtype, shape) and the raw bytes, so
reading and writing is one system call each way.

ComfyUI's HTTP upload caps a request (100 MB by default); a file larger than that arrives in
parts `<name>.part000`, `<name>.part001`, ... that are read back in order as one stream (the
first part holds the whole header: the worker never cuts parts below 64 KiB).
A file may hold a batch (BxHxWxC) of same-size inputs. Everything read is checked: uint8,
C order, [B]xHxWx3 or [B]xHxWx4, and exactly as many bytes as the
header says. Pure file I/O and numpy: no ComfyUI import, no torch.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

MAX_PARTS = 64
# Far above any input cap (MAX_INPUT_PIXELS) and any canvas our nodes make (8192x8192).
MAX_PIXELS = 256 * 1024 * 1024
MAX_BATCH = 64  # the worker's most inputs per job


class RawPixelsError(ValueError):
    """A raw pixel file is missing, malformed or not 8-bit RGB/RGBA."""


def part_name(name: str, index: int) -> str:
    return f"{name}.part{index:03d}"


def part_paths(path: Path, parts: int) -> list[Path]:
    """The files that hold one raw image: the file itself, or its numbered parts."""
    if not 1 <= parts <= MAX_PARTS:
        raise RawPixelsError(f"parts must be 1..{MAX_PARTS}, got {parts}")
    if parts == 1:
        return [path]
    return [path.with_name(part_name(path.name, i)) for i in range(parts)]


def check_pixels(array: np.ndarray) -> np.ndarray:
    """`array` if it is HxWx3/4 (or a batch BxHxWx3/4) uint8 within MAX_PIXELS per image."""
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] not in (3, 4):
        raise RawPixelsError(
            f"raw pixels must be uint8 [B]xHxWx3 or [B]xHxWx4, got {array.dtype} {array.shape}"
        )
    height, width = array.shape[-3:-1]
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise RawPixelsError(f"raw pixels have an unsupported size {width}x{height}")
    if array.ndim == 4 and not 1 <= array.shape[0] <= MAX_BATCH:
        raise RawPixelsError(f"a raw batch holds 1..{MAX_BATCH} images, got {array.shape[0]}")
    return array


def header_bytes(shape: tuple[int, ...]) -> bytes:
    """The .npy header for a C-order uint8 array of `shape` (what np.save would write)."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def write_pixels(path: Path, array: np.ndarray) -> None:
    """Write one .npy file; the folder must exist."""
    pixels = np.ascontiguousarray(check_pixels(array))
    with open(path, "wb") as out:
        out.write(header_bytes(pixels.shape))
        out.write(pixels.data.cast("B"))


def _chained(paths: list[Path]) -> Iterator[tuple[Path, int]]:
    for path in paths:
        try:
            yield path, os.path.getsize(path)
        except OSError:
            raise RawPixelsError(f"raw pixel file {path.name!r} is missing") from None


def read_pixels(path: Path, parts: int = 1) -> np.ndarray:
    """Read a raw image written by `write_pixels` (or split into `parts`) and check it."""
    paths = part_paths(path, parts)
    sizes = dict(_chained(paths))
    with open(paths[0], "rb") as first:
        try:
            version = npy_format.read_magic(first)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(first)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(first)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise RawPixelsError(f"{paths[0].name!r} is not a .npy file ({exc})") from None
        if fortran or dtype != np.uint8 or len(shape) not in (3, 4):
            raise RawPixelsError(f"raw pixels must be C-order uint8 [B]xHxWxC, got {dtype} {shape}")
        pixels = check_pixels(np.empty(shape, dtype=np.uint8))
        offset = first.tell()
    if sum(sizes.values()) - offset != pixels.nbytes:
        raise RawPixelsError(
            f"{paths[0].name!r}: {sum(sizes.values()) - offset} bytes of pixels, "
            f"the header says {pixels.nbytes}"
        )
    view = pixels.data.cast("B")
    filled = 0
    for index, part in enumerate(paths):
        with open(part, "rb") as stream:
            if index == 0:
                stream.seek(offset)
            filled += _read_into(stream, view[filled:])
    return pixels


def _read_into(stream: object, view: memoryview) -> int:
    """Fill as much of `view` as the stream holds; returns the byte count."""
    total = 0
    while total < len(view):
        count = stream.readinto(view[total:])  # type: ignore[attr-defined]
        if not count:
            break
        total += count
    return total
