"""decode_image on images of every kind, each generated here with Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

from handler.decode import ALLOWED_FORMATS, decode_image, to_srgb_8bit
from handler.errors import ErrorCode, JobError

MAX = 10_000_000


def save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def swapped_primaries_profile() -> bytes:
    """sRGB with its red and green primaries exchanged: 'red' pixels mean sRGB green."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", data[128:132])
    offsets = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = offsets[b"rXYZ"], offsets[b"gXYZ"]
    data[red + 4 : red + 12], data[green + 4 : green + 12] = (
        data[green + 4 : green + 12],
        data[red + 4 : red + 12],
    )
    return bytes(data)


def k_only_cmyk_profile() -> bytes:
    """A minimal ICC v2 CMYK profile (lut8 A2B0) whose colour depends on K alone.

    Cyan ink therefore comes out white through the profile, but cyan without it.
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    desc_text = b"k-only test CMYK\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(desc_text)) + desc_text + bytes(8 + 3 + 67)
    white = s15(0.9642) + s15(1.0) + s15(0.8249)
    ramp = bytes(range(256))
    clut = b"".join(
        bytes([255 * (1 - k), 128, 128])  # Lab: L from K, neutral a/b
        for _c in (0, 1)
        for _m in (0, 1)
        for _y in (0, 1)
        for k in (0, 1)
    )
    identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a2b0 = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity + ramp * 4 + clut + ramp * 3
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + bytes(4) + white), (b"A2B0", a2b0)]
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, payload in tags:
        body += bytes(-(start + len(body)) % 4)
        table += sig + struct.pack(">II", start + len(body), len(payload))
        body += payload
    header = (
        struct.pack(">I", start + len(body))
        + bytes(4)
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)  # platform, flags, manufacturer, model, attributes, intent
        + white  # PCS illuminant
        + bytes(48)  # creator, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def test_allowed_formats_constant() -> None:
    assert set(ALLOWED_FORMATS) == {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_rgb_round_trip_is_exact_for_lossless_formats(fmt: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(save(Image.fromarray(pixels), fmt, **options), max_pixels=MAX)
    assert decoded.source_format == fmt
    assert decoded.image.mode == "RGB" and not decoded.has_alpha
    assert np.array_equal(np.asarray(decoded.image), pixels)
    assert decoded.image.info == {}


def test_format_is_sniffed_from_content_not_name() -> None:
    # PNG bytes in a file called photo.jpg: only the bytes matter to decode_image.
    data = save(Image.new("RGB", (3, 3), (1, 2, 3)), "PNG")
    decoded = decode_image(data, max_pixels=MAX)
    assert decoded.source_format == "PNG"


def test_cmyk_jpeg_without_profile_becomes_rgb() -> None:
    data = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    decoded = decode_image(data, max_pixels=MAX)
    assert decoded.source_format == "JPEG"
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15


def test_cmyk_jpeg_uses_its_icc_profile() -> None:
    profile = k_only_cmyk_profile()
    cyan = save(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", icc_profile=profile)
    black = save(Image.new("CMYK", (8, 8), (0, 0, 0, 255)), "JPEG", icc_profile=profile)
    # Naively cyan ink is (0, 255, 255); through this profile only K counts, so it is white.
    assert all(c > 245 for c in decode_image(cyan, max_pixels=MAX).image.getpixel((4, 4)))
    assert all(c < 10 for c in decode_image(black, max_pixels=MAX).image.getpixel((4, 4)))


def test_rgb_icc_profile_is_converted_to_srgb_then_dropped() -> None:
    data = save(
        Image.new("RGB", (4, 4), (255, 0, 0)), "PNG", icc_profile=swapped_primaries_profile()
    )
    decoded = decode_image(data, max_pixels=MAX)
    red, green, blue = decoded.image.getpixel((0, 0))
    assert red < 10 and green > 245 and blue < 10
    assert "icc_profile" not in decoded.image.info


def test_rgba_icc_conversion_keeps_alpha() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 77))
    decoded = decode_image(
        save(image, "PNG", icc_profile=swapped_primaries_profile()), max_pixels=MAX
    )
    assert decoded.image.mode == "RGBA"
    assert decoded.image.getpixel((0, 0))[1:] == (255, 0, 77)


def test_broken_icc_profile_is_ignored() -> None:
    data = save(Image.new("RGB", (4, 4), (10, 20, 30)), "PNG", icc_profile=b"not a profile")
    assert decode_image(data, max_pixels=MAX).image.getpixel((0, 0)) == (10, 20, 30)


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode_image(save(image, "PNG"), max_pixels=MAX)
    assert decoded.image.mode == "RGB"
    assert [decoded.image.getpixel((x, 0))[0] for x in range(4)] == [0, 100, 255, 128]


def test_sixteen_bit_big_endian_tiff() -> None:
    values = np.array([[0, 257 * 200]], dtype=">u2")
    image = Image.fromarray(values)
    assert image.mode == "I;16B"
    decoded = decode_image(save(image, "TIFF"), max_pixels=MAX)
    assert [decoded.image.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (200, 200, 200)]


def test_thirty_two_bit_int_tiff_is_taken_as_sixteen_bit_range() -> None:
    image = Image.fromarray(np.array([[0, 257 * 50, 65535]], dtype=np.int32), mode="I")
    decoded = decode_image(save(image, "TIFF"), max_pixels=MAX)
    assert [decoded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 50, 255]


def test_float_tiff_in_unit_range() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    decoded = decode_image(save(image, "TIFF"), max_pixels=MAX)
    assert [decoded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_palette_with_transparency_becomes_rgba() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    data = save(image, "PNG", transparency=0)
    decoded = decode_image(data, max_pixels=MAX)
    assert decoded.has_alpha and decoded.image.mode == "RGBA"
    assert decoded.image.getpixel((0, 0))[3] == 0
    assert decoded.image.getpixel((1, 0)) == (0, 0, 255, 255)


def test_palette_without_transparency_becomes_rgb() -> None:
    image = Image.new("P", (1, 1))
    image.putpalette([12, 34, 56] + [0] * 765)
    decoded = decode_image(save(image, "PNG"), max_pixels=MAX)
    assert decoded.image.mode == "RGB" and decoded.image.getpixel((0, 0)) == (12, 34, 56)


def test_greyscale_becomes_rgb() -> None:
    decoded = decode_image(save(Image.new("L", (2, 2), 77), "PNG"), max_pixels=MAX)
    assert decoded.image.mode == "RGB" and decoded.image.getpixel((0, 0)) == (77, 77, 77)


def test_grey_alpha_becomes_rgba() -> None:
    decoded = decode_image(save(Image.new("LA", (2, 2), (77, 100)), "PNG"), max_pixels=MAX)
    assert decoded.has_alpha
    assert decoded.image.getpixel((0, 0)) == (77, 77, 77, 100)


def test_one_bit_becomes_rgb() -> None:
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    decoded = decode_image(save(image, "PNG"), max_pixels=MAX)
    assert [decoded.image.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]


def test_rgb_colour_key_transparency_becomes_alpha() -> None:
    image = Image.new("RGB", (2, 1), (9, 9, 9))
    image.putpixel((1, 0), (200, 100, 50))
    decoded = decode_image(save(image, "PNG", transparency=(9, 9, 9)), max_pixels=MAX)
    assert decoded.image.mode == "RGBA"
    assert decoded.image.getpixel((0, 0))[3] == 0
    assert decoded.image.getpixel((1, 0)) == (200, 100, 50, 255)


def test_premultiplied_modes_are_unpremultiplied() -> None:
    rgba = to_srgb_8bit(Image.new("RGBa", (1, 1), (128, 64, 0, 128)))
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (255, 127, 0, 128)
    la = to_srgb_8bit(Image.merge("La", (Image.new("L", (1, 1), 64), Image.new("L", (1, 1), 128))))
    assert la.mode == "RGBA" and la.getpixel((0, 0)) == (127, 127, 127, 128)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    options: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    data = save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2
    decoded = decode_image(data, max_pixels=MAX)
    assert decoded.source_format == fmt
    assert decoded.image.convert("RGB").getpixel((4, 4)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    image.paste((0, 0, 255), (2, 0, 4, 2))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(save(image, "PNG", exif=exif.tobytes()), max_pixels=MAX)
    assert decoded.image.size == (2, 4)
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)  # left half is now the top
    assert decoded.image.getpixel((0, 3)) == (0, 0, 255)
    assert "exif" not in decoded.image.info


def test_pixel_cap_is_checked_before_decoding() -> None:
    data = save(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(JobError) as info:
        decode_image(data, max_pixels=9_999)
    assert info.value.code is ErrorCode.INPUT_TOO_LARGE
    assert decode_image(data, max_pixels=10_000).image.size == (100, 100)


def bomb_png(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width x height (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("max_pixels", [64_000_000, 10**12])
def test_decompression_bomb_header_is_refused(max_pixels: int) -> None:
    # With a huge cap, Pillow's own DecompressionBombError fires first; both map the same.
    data = bomb_png(100_000, 100_000)
    assert len(data) < 100
    with pytest.raises(JobError) as info:
        decode_image(data, max_pixels=max_pixels)
    assert info.value.code is ErrorCode.INPUT_TOO_LARGE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_not_an_image(fmt: str) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), fmt)
    with pytest.raises(JobError) as info:
        decode_image(data[: len(data) // 2], max_pixels=MAX)
    assert info.value.code is ErrorCode.INPUT_NOT_IMAGE


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is a text file\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,  # signature then garbage
    ],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(JobError) as info:
        decode_image(data, max_pixels=MAX)
    assert info.value.code is ErrorCode.INPUT_NOT_IMAGE


def test_formats_outside_the_allowed_list_are_refused() -> None:
    data = save(Image.new("RGB", (4, 4)), "PCX")
    with Image.open(io.BytesIO(data)) as check:
        assert check.format == "PCX"  # Pillow itself could read it
    with pytest.raises(JobError) as info:
        decode_image(data, max_pixels=MAX)
    assert info.value.code is ErrorCode.INPUT_NOT_IMAGE
