"""Safe image decoding: sniffed format, pixel cap, first frame, EXIF orientation, sRGB 8-bit.

Pure functions (bytes in, PIL image out). The format is identified from the content by Pillow,
never from a file name or Content-Type.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from handler.errors import ErrorCode, JobError

log = logging.getLogger(__name__)

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""Pillow format names accepted as inputs; no other Pillow plugin is even tried."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB" or "RGBA", 8-bit, sRGB, empty .info
    has_alpha: bool  # the source had an alpha channel or transparency (image.mode == "RGBA")
    source_format: str  # one of ALLOWED_FORMATS

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode untrusted bytes into an upright 8-bit sRGB RGB/RGBA image (first frame only).

    Raises JobError(INPUT_TOO_LARGE) when width*height exceeds max_pixels (checked from the
    header, before pixel data is decoded) and JobError(INPUT_NOT_IMAGE) for anything that is not
    a complete image in an allowed format.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own global guard fired (only if the warning is configured as an error).
        raise _too_large(None, max_pixels) from None
    except UnidentifiedImageError:
        raise JobError(
            ErrorCode.INPUT_NOT_IMAGE,
            f"input is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})",
        ) from None
    except _DECODE_ERRORS as exc:
        raise _not_image(exc) from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise JobError(ErrorCode.INPUT_NOT_IMAGE, "image has no pixels")
        if width * height > max_pixels:
            raise _too_large((width, height), max_pixels)
        # Multi-picture JPEGs from phones identify as MPO; they are JPEGs (first picture).
        source_format = "JPEG" if image.format == "MPO" else str(image.format)
        try:
            image.load()  # the first frame only: we never seek
            icc = image.info.get("icc_profile")
            upright = apply_exif_orientation(image)
            converted = to_srgb_8bit(upright, icc)
        except Image.DecompressionBombError:
            raise _too_large((width, height), max_pixels) from None
        except _DECODE_ERRORS as exc:
            raise _not_image(exc) from None
    converted.info.clear()
    return DecodedImage(converted, converted.mode == "RGBA", source_format)


def to_srgb_8bit(image: Image.Image, icc_profile: bytes | None = None) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB or RGBA, colours converted from `icc_profile` to sRGB.

    RGBA is chosen when the source has an alpha band or palette/tRNS transparency. Alpha stays
    straight (premultiplied RGBa/La are unpremultiplied). A broken or mismatched profile is
    logged and ignored rather than failing the job.
    """
    base = _to_8bit_base(image)
    if icc_profile:
        try:
            return _apply_icc(base, icc_profile)
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("ignoring an unusable ICC profile", extra={"error": str(exc)})
    if base.mode in ("RGB", "RGBA"):
        return base
    return base.convert("RGBA" if _has_alpha_band(base) else "RGB")


def _has_alpha_band(image: Image.Image) -> bool:
    return any(band in ("A", "a") for band in image.getbands())


def _to_8bit_base(image: Image.Image) -> Image.Image:
    """Reduce to one of L, LA, RGB, RGBA, CMYK (8-bit) without colour management."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        if "transparency" in image.info and mode in ("L", "RGB"):
            return image.convert("LA" if mode == "L" else "RGBA")  # tRNS colour key -> alpha
        return image
    if mode in _SIXTEEN_BIT or mode == "I":
        # Pillow's own I;16 -> L conversion clips at 255 instead of scaling.
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(values, 0, 65535) / 257.0
        grey = Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
        return _with_key_alpha(grey, image, values)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        # Float images are conventionally 0..1; larger ranges are taken as 0..255.
        factor = 255.0 if values.size and values.max() <= 1.0 else 1.0
        pixels = np.clip(np.rint(values * factor), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels, mode="L")
    if mode == "La":
        lum, alpha = image.split()
        return Image.merge("RGBa", (lum, lum, lum, alpha)).convert("RGBA")
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    return image.convert("RGBA" if _has_alpha_band(image) else "RGB")


def _with_key_alpha(grey: Image.Image, source: Image.Image, values: np.ndarray) -> Image.Image:
    """Apply a 16-bit PNG's tRNS grey key (an int in .info) as an alpha channel."""
    key = source.info.get("transparency")
    if not isinstance(key, int):
        return grey
    alpha = Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8), mode="L")
    return Image.merge("LA", (grey, alpha))


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _apply_icc(image: Image.Image, icc_profile: bytes) -> Image.Image:
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    alpha = None
    if image.mode in ("LA", "RGBA"):
        alpha = image.getchannel("A")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    converted = ImageCms.profileToProfile(
        image,
        source,
        _srgb(),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        outputMode="RGB",
    )
    assert converted is not None  # not inPlace
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """A copy of the image turned upright per its EXIF Orientation tag (which is removed)."""
    try:
        upright = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:  # malformed EXIF must not sink an otherwise good image
        log.warning("ignoring an unreadable EXIF orientation", extra={"error": str(exc)})
        return image.copy()  # the caller closes the file-backed original
    assert upright is not None  # not in_place
    return upright


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> JobError:
    shown = f" ({size[0]}x{size[1]})" if size else ""
    return JobError(ErrorCode.INPUT_TOO_LARGE, f"image{shown} has more than {max_pixels} pixels")


def _not_image(exc: BaseException) -> JobError:
    return JobError(
        ErrorCode.INPUT_NOT_IMAGE, f"image data is corrupt or truncated ({type(exc).__name__})"
    )
