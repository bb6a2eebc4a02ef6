"""Images that carry every kind of metadata, and checks that an encoded output carries none.

Shared by the encoder unit tests and the end-to-end hand-over tests (tests only).
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from handler.outputs import EncodedImage, png_chunks

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    b"<dc:creator>secret author</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8298] = "secret copyright"
    return exif.tobytes()


def save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noisy_rgba(seed: int = 0, size: tuple[int, int] = (24, 16)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    pixels[..., 3] = np.where(pixels[..., 3] < 64, 0, pixels[..., 3])  # some fully transparent
    return Image.fromarray(pixels, mode="RGBA")


def dirty_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret text chunk")
    info.add_text("parameters", "secret prompt", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add(b"caBX", b"jumb" + b"c2pa manifest store" * 4)  # C2PA's PNG chunk
    return save(noisy_rgba(), "PNG", pnginfo=info, exif=exif_bytes(), icc_profile=SRGB_ICC)


def dirty_jpeg() -> bytes:
    data = save(
        noisy_rgba().convert("RGB"),
        "JPEG",
        exif=exif_bytes(),
        icc_profile=SRGB_ICC,
        comment=b"secret comment",
        xmp=XMP,
    )

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    iptc = segment(0xED, b"Photoshop 3.0\0" + b"8BIM\x04\x04\0\0\0\0\0\x0csecret iptc!")
    c2pa = segment(0xEB, b"JP\0\x01\0\0\0\x01" + b"jumbc2pa secret manifest")
    return data[:2] + iptc + c2pa + data[2:]


def dirty_webp() -> bytes:
    return save(
        noisy_rgba(), "WEBP", lossless=True, exif=exif_bytes(), icc_profile=SRGB_ICC, xmp=XMP
    )


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes before the first scan (where all metadata segments live)."""
    assert data[:2] == b"\xff\xd8"
    markers, offset = [], 2
    while offset < len(data):
        assert data[offset] == 0xFF
        marker = data[offset + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        offset += 2 + length
    return markers


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks.append((kind, data[offset + 8 : offset + 8 + size]))
        offset += 8 + size + (size & 1)
    return chunks


METADATA_JPEG_MARKERS = {0xE1, 0xE2, 0xEB, 0xED, 0xFE}  # APP1 APP2 APP11 APP13 COM


def assert_no_metadata(encoded: EncodedImage) -> None:
    data = encoded.data
    assert b"secret" not in data
    if encoded.format == "png":
        kinds = {kind for kind, _ in png_chunks(data)}
        assert kinds <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}, kinds
    elif encoded.format == "jpeg":
        markers = set(jpeg_markers(data))
        assert not markers & METADATA_JPEG_MARKERS, [hex(m) for m in markers]
    else:
        chunks = webp_chunks(data)
        kinds = {kind for kind, _ in chunks}
        assert not kinds & {b"EXIF", b"XMP ", b"ICCP"}, kinds
        for kind, payload in chunks:
            if kind == b"VP8X":
                assert payload[0] & 0x2C == 0  # no ICC (0x20), EXIF (0x08), XMP (0x04) flags
