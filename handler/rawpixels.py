"""Raw 8-bit RGB/RGBA pixels in NumPy's .npy format: what the worker and ComfyUI exchange.

The node pack's `simplypng.raw_pixels` reads and writes the same files inside ComfyUI (the two
sides ship separately, so each carries its few lines). Anything read back is checked: uint8,
C order, HxWx3 or HxWx4, sane size; `np.load` never unpickles.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from handler.errors import ErrorCode, JobError

NPY_MAGIC = b"\x93NUMPY"
MAX_PIXELS = 256 * 1024 * 1024  # the node pack's bound: above any input cap or canvas


def check(array: np.ndarray, *, batch: bool = False) -> np.ndarray:
    """8-bit RGB/RGBA pixels, HxWxC (or BxHxWxC when `batch`), of a sane size."""
    dims = (3, 4) if batch else (3,)
    if array.dtype != np.uint8 or array.ndim not in dims or array.shape[-1] not in (3, 4):
        raise JobError(
            ErrorCode.NODE_ERROR,
            f"the workflow returned pixels of type {array.dtype} {array.shape}, "
            "expected 8-bit RGB or RGBA",
        )
    height, width = array.shape[-3:-1]
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise JobError(ErrorCode.NODE_ERROR, f"the workflow returned a {width}x{height} image")
    return array


def header(shape: tuple[int, ...]) -> bytes:
    """The .npy header np.save writes for a C-order uint8 array of `shape`."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def to_bytes(pixels: np.ndarray) -> bytes:
    """The .npy bytes of an image or a batch of same-size images (what the loaders read)."""
    contiguous = np.ascontiguousarray(check(pixels, batch=True))
    return header(contiguous.shape) + contiguous.tobytes()


def write(path: Path, pixels: np.ndarray) -> None:
    contiguous = np.ascontiguousarray(check(pixels, batch=True))
    with open(path, "wb") as out:
        out.write(header(contiguous.shape))
        out.write(contiguous.data.cast("B"))


def _load(source: Path | io.BytesIO) -> np.ndarray:
    try:
        array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise JobError(
            ErrorCode.NODE_ERROR, f"the workflow wrote an unreadable raw image ({exc})"
        ) from None
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise JobError(ErrorCode.NODE_ERROR, "the workflow wrote an unreadable raw image")
    return check(array)


def read(path: Path) -> np.ndarray:
    return _load(path)


def from_bytes(data: bytes) -> np.ndarray:
    return _load(io.BytesIO(data))


def is_raw(data: bytes) -> bool:
    return data[: len(NPY_MAGIC)] == NPY_MAGIC
