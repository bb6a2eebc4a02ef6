"""Output sanitising and encoding: no metadata leaves the worker, and no hidden pixels.

`sanitize` rebuilds the image from raw pixels (so EXIF, XMP, IPTC, ICC, text chunks and C2PA
cannot ride along) after converting to sRGB, and zeroes colour under fully transparent pixels
(otherwise the removed background is still in the file). `encode` writes PNG, WebP or JPEG
with explicit options only. The per-format encoders are public for scripts/bench_handler.py.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from handler.decode import apply_exif_orientation, to_srgb_8bit

OutputFormat = Literal["png", "webp", "jpeg"]
PngEncoder = Literal["fpng", "pillow-fast", "pillow"]

CONTENT_TYPES: dict[OutputFormat, str] = {
    "png": "image/png",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
}
EXTENSIONS: dict[OutputFormat, str] = {"png": "png", "webp": "webp", "jpeg": "jpg"}
JPEG_QUALITY = 92
WEBP_QUALITY = 90
PNG_KEEP_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    width: int
    height: int
    format: OutputFormat
    content_type: str
    sha256: str  # hex digest of data

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def sanitize(image: Image.Image) -> Image.Image:
    """A metadata-free 8-bit sRGB RGB/RGBA copy, with RGB zeroed where alpha is 0.

    EXIF orientation is applied first (the tag itself is about to be dropped) and an attached
    ICC profile is converted to sRGB. Alpha is straight: visible pixels keep their colour.
    """
    upright = apply_exif_orientation(image)
    converted = to_srgb_8bit(upright, upright.info.get("icc_profile"))
    pixels = np.array(converted, dtype=np.uint8)  # a copy, detached from the source image
    if converted.mode == "RGBA":
        pixels[pixels[..., 3] == 0, :3] = 0
    # fromarray builds a new image whose .info is empty: nothing from the source survives.
    return Image.fromarray(pixels, mode=converted.mode)


def sanitize_pixels(pixels: np.ndarray) -> np.ndarray:
    """Zero every channel of RGBA pixels whose alpha is 0, in place; returns `pixels`.

    Raw pixels from our save node are already 8-bit sRGB with nothing attached: this is the
    one rule left. Viewed as little-endian uint32 a pixel is below 1 << 24 exactly when its
    alpha byte is 0, so one compare and one masked store zero its colour (and its 0 alpha).
    """
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        return pixels
    if not pixels.flags.c_contiguous or not pixels.flags.writeable:
        pixels = np.array(pixels, order="C")
    words = pixels.view("<u4")
    np.putmask(words, words < (1 << 24), 0)
    return pixels


def encode_pixels(
    pixels: np.ndarray, fmt: OutputFormat, *, png_encoder: PngEncoder = "fpng"
) -> EncodedImage:
    """Encode raw HxWx3/4 uint8 sRGB pixels (after `sanitize_pixels`): the one encode of a job."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError("encode_pixels() takes 8-bit RGB or RGBA pixels")
    height, width = pixels.shape[:2]
    if fmt == "png" and png_encoder == "fpng":
        import fpng

        data = strip_png_chunks(fpng.from_ndarray(np.ascontiguousarray(pixels)))
        return _encoded(data, width, height, fmt)
    image = Image.fromarray(pixels, mode="RGBA" if pixels.shape[2] == 4 else "RGB")
    return encode(image, fmt, png_encoder=png_encoder)


def encode_output(
    data: np.ndarray | bytes, fmt: OutputFormat, png_encoder: PngEncoder
) -> EncodedImage:
    """A workflow output -> the job's file: raw pixels directly, anything else via `sanitize`."""
    if isinstance(data, np.ndarray):
        return encode_pixels(sanitize_pixels(data), fmt, png_encoder=png_encoder)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        clean = sanitize(img)
    return encode(clean, fmt, png_encoder=png_encoder)


def _encoded(data: bytes, width: int, height: int, fmt: OutputFormat) -> EncodedImage:
    return EncodedImage(
        data=data,
        width=width,
        height=height,
        format=fmt,
        content_type=CONTENT_TYPES[fmt],
        sha256=hashlib.sha256(data).hexdigest(),
    )


def encode(
    image: Image.Image, fmt: OutputFormat, *, png_encoder: PngEncoder = "pillow-fast"
) -> EncodedImage:
    """Encode a `sanitize`d image. Raises ValueError for anything else (mode or metadata)."""
    if image.mode not in ("RGB", "RGBA") or image.info:
        raise ValueError("encode() takes the output of sanitize(): RGB/RGBA with no metadata")
    if fmt == "png":
        data = encode_png(image, png_encoder)
    elif fmt == "webp":
        data = encode_webp(image)
    elif fmt == "jpeg":
        data = encode_jpeg(image)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return _encoded(data, image.width, image.height, fmt)


def encode_png(image: Image.Image, encoder: PngEncoder = "pillow-fast") -> bytes:
    """PNG via fpng (fastest), Pillow zlib level 1 ('pillow-fast') or Pillow's default level."""
    if encoder == "fpng":
        # Imported here: importing fpng registers a Pillow plugin (a process-wide side effect).
        import fpng

        raw = fpng.from_bytes(image.tobytes(), image.width, image.height, len(image.getbands()))
        # fpng adds a private ancillary "fdEC" chunk (its decoder's marker): drop it.
        return strip_png_chunks(raw)
    buffer = io.BytesIO()
    if encoder == "pillow-fast":
        image.save(buffer, format="PNG", compress_level=1)
    elif encoder == "pillow":
        image.save(buffer, format="PNG")
    else:
        raise ValueError(f"unknown PNG encoder {encoder!r}")
    return buffer.getvalue()


def encode_webp(image: Image.Image) -> bytes:
    """Lossless when there is alpha (edges must stay exact), else lossy quality 90."""
    buffer = io.BytesIO()
    if image.mode == "RGBA":
        # exact=True keeps RGB under alpha 0 as sanitize() left it (zeroed); libwebp would
        # otherwise rewrite those pixels.
        image.save(buffer, format="WEBP", lossless=True, exact=True)
    else:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()


def encode_jpeg(image: Image.Image) -> bytes:
    """Quality 92, 4:4:4, no EXIF/ICC; alpha is flattened onto white (JPEG has none)."""
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) for each chunk of a PNG; ValueError if the structure is broken."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks: list[tuple[bytes, bytes]] = []
    offset = len(_PNG_SIGNATURE)
    while offset < len(data):
        if offset + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset = end
    return chunks


def strip_png_chunks(data: bytes, keep: frozenset[bytes] = PNG_KEEP_CHUNKS) -> bytes:
    """Copy a PNG keeping only the listed chunk types (CRCs are per chunk, so still valid)."""
    out = [_PNG_SIGNATURE]
    offset = len(_PNG_SIGNATURE)
    for kind, payload in png_chunks(data):
        size = 12 + len(payload)
        if kind in keep:
            out.append(data[offset : offset + size])
        offset += size
    return b"".join(out)
