"""sanitize + encode: no metadata in any output format, straight alpha, zeroed hidden pixels."""

from __future__ import annotations

import hashlib
import io
import struct
from typing import Any

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from handler.outputs import (
    encode,
    encode_output,
    encode_pixels,
    encode_png,
    png_chunks,
    sanitize,
    sanitize_pixels,
    strip_png_chunks,
)
from tests.fakes.dirty_images import (
    SRGB_ICC,
    assert_no_metadata,
    dirty_jpeg,
    dirty_png,
    dirty_webp,
    jpeg_markers,
    noisy_rgba,
    save,
    webp_chunks,
)

ALL_ENCODINGS: list[tuple[str, str]] = [
    ("png", "fpng"),
    ("png", "pillow-fast"),
    ("png", "pillow"),
    ("webp", "pillow-fast"),
    ("jpeg", "pillow-fast"),
]


def test_dirty_inputs_really_carry_metadata() -> None:
    # Guards the tests below against passing because the fixtures were clean already.
    png_kinds = {kind for kind, _ in png_chunks(dirty_png())}
    assert {b"eXIf", b"iTXt", b"iCCP", b"tEXt", b"zTXt", b"caBX"} <= png_kinds
    assert {0xE1, 0xE2, 0xEB, 0xED, 0xFE} <= set(jpeg_markers(dirty_jpeg()))
    assert {b"EXIF", b"XMP ", b"ICCP"} <= {kind for kind, _ in webp_chunks(dirty_webp())}


@pytest.mark.parametrize("source", [dirty_png, dirty_jpeg, dirty_webp])
@pytest.mark.parametrize(("fmt", "png_encoder"), ALL_ENCODINGS)
def test_outputs_carry_no_metadata(source: Any, fmt: Any, png_encoder: Any) -> None:
    with Image.open(io.BytesIO(source())) as image:
        image.load()
        assert image.info  # Pillow surfaced some of it
        clean = sanitize(image)
    assert clean.info == {}
    assert_no_metadata(encode(clean, fmt, png_encoder=png_encoder))


def test_fpng_private_chunk_is_stripped() -> None:
    import fpng

    image = noisy_rgba()
    raw = fpng.from_bytes(image.tobytes(), image.width, image.height, 4)
    assert b"fdEC" in {kind for kind, _ in png_chunks(raw)}  # what fpng itself writes
    stripped = encode_png(image, "fpng")
    assert [kind for kind, _ in png_chunks(stripped)] == [b"IHDR", b"IDAT", b"IEND"]
    with Image.open(io.BytesIO(stripped)) as reopened:
        assert np.array_equal(np.asarray(reopened), np.asarray(image))


def test_strip_png_chunks_keeps_a_valid_png() -> None:
    stripped = strip_png_chunks(dirty_png())
    assert [kind for kind, _ in png_chunks(stripped)][:1] == [b"IHDR"]
    with Image.open(io.BytesIO(stripped)) as reopened:
        reopened.load()  # CRCs are verified on load
        assert reopened.info == {}


@pytest.mark.parametrize(("fmt", "png_encoder"), [e for e in ALL_ENCODINGS if e[0] != "jpeg"])
def test_lossless_outputs_keep_pixels_exactly(fmt: Any, png_encoder: Any) -> None:
    clean = sanitize(noisy_rgba(seed=5))
    encoded = encode(clean, fmt, png_encoder=png_encoder)
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert reopened.mode == "RGBA"
        assert np.array_equal(np.asarray(reopened), np.asarray(clean))


def test_rgb_under_zero_alpha_is_zeroed_and_straight_alpha_kept() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (200, 100, 50, 0))  # hidden background colour
    image.putpixel((1, 0), (255, 255, 255, 128))  # white at 50%
    image.putpixel((2, 0), (10, 20, 30, 255))
    clean = sanitize(image)
    assert [clean.getpixel((x, 0)) for x in range(3)] == [
        (0, 0, 0, 0),
        (255, 255, 255, 128),  # straight alpha: not premultiplied to grey
        (10, 20, 30, 255),
    ]
    for fmt, encoder in [e for e in ALL_ENCODINGS if e[0] != "jpeg"]:
        data = encode(clean, fmt, png_encoder=encoder).data  # type: ignore[arg-type]
        with Image.open(io.BytesIO(data)) as reopened:
            assert reopened.getpixel((1, 0)) == (255, 255, 255, 128), (fmt, encoder)
            assert reopened.getpixel((0, 0)) == (0, 0, 0, 0), (fmt, encoder)


def test_sanitize_does_not_modify_its_input() -> None:
    image = Image.new("RGBA", (1, 1), (200, 100, 50, 0))
    sanitize(image)
    assert image.getpixel((0, 0)) == (200, 100, 50, 0)


def test_jpeg_flattens_alpha_onto_white() -> None:
    image = Image.new("RGBA", (16, 16), (255, 255, 255, 128))
    image.paste((0, 0, 0, 128), (8, 0, 16, 16))
    encoded = encode(sanitize(image), "jpeg")
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert reopened.mode == "RGB"
        assert all(c >= 253 for c in reopened.getpixel((3, 8)))  # white over white stays white
        assert all(abs(c - 127) <= 3 for c in reopened.getpixel((12, 8)))  # 50% black on white


def test_jpeg_is_quality_92_with_444_subsampling() -> None:
    encoded = encode(sanitize(noisy_rgba().convert("RGB")), "jpeg")
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert isinstance(reopened, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(reopened) == 0  # 4:4:4


def test_webp_is_lossless_with_alpha_and_lossy_without() -> None:
    with_alpha = encode(sanitize(noisy_rgba()), "webp")
    opaque = encode(sanitize(noisy_rgba().convert("RGB")), "webp")
    assert b"VP8L" in {kind for kind, _ in webp_chunks(with_alpha.data)}
    assert b"VP8 " in {kind for kind, _ in webp_chunks(opaque.data)}


def swapped_primaries_profile() -> bytes:
    """sRGB with its red and green primaries exchanged: 'red' pixels mean sRGB green."""
    data = bytearray(SRGB_ICC)
    (count,) = struct.unpack(">I", data[128:132])
    offsets = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = offsets[b"rXYZ"], offsets[b"gXYZ"]
    data[red + 4 : red + 12], data[green + 4 : green + 12] = (
        data[green + 4 : green + 12],
        data[red + 4 : red + 12],
    )
    return bytes(data)


def test_sanitize_converts_attached_icc_profile_to_srgb() -> None:
    tagged = save(
        Image.new("RGB", (2, 2), (255, 0, 0)), "PNG", icc_profile=swapped_primaries_profile()
    )
    with Image.open(io.BytesIO(tagged)) as image:
        image.load()
        clean = sanitize(image)
    red, green, blue = clean.getpixel((0, 0))
    assert red < 10 and green > 245 and blue < 10


def test_sanitize_applies_exif_orientation_before_dropping_it() -> None:
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    with Image.open(io.BytesIO(save(image, "PNG", exif=exif.tobytes()))) as opened:
        opened.load()
        clean = sanitize(opened)
    assert clean.size == (2, 4) and clean.info == {}


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("png", "image/png"), ("webp", "image/webp"), ("jpeg", "image/jpeg")]
)
def test_encoded_image_describes_its_bytes(fmt: Any, content_type: str) -> None:
    clean = sanitize(noisy_rgba(size=(9, 7)))
    encoded = encode(clean, fmt)
    assert (encoded.width, encoded.height, encoded.format) == (9, 7, fmt)
    assert encoded.content_type == content_type
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert reopened.size == (9, 7)


@pytest.mark.parametrize(
    "image",
    [Image.new("L", (2, 2)), Image.new("RGB", (2, 2)).convert("P")],
)
def test_encode_refuses_unsanitized_modes(image: Image.Image) -> None:
    with pytest.raises(ValueError):
        encode(image, "png")


def test_encode_refuses_images_with_metadata() -> None:
    image = Image.new("RGB", (2, 2))
    image.info["icc_profile"] = SRGB_ICC
    with pytest.raises(ValueError):
        encode(image, "png")


# --- raw pixels from the save node: one sanitise pass, one encode --------------------------


def test_sanitize_pixels_zeroes_exactly_the_hidden_pixels() -> None:
    pixels = np.array(noisy_rgba(seed=3, size=(37, 29)))
    before = pixels.copy()
    out = sanitize_pixels(pixels)
    hidden = before[..., 3] == 0
    assert hidden.any() and (~hidden).any()
    assert (out[hidden] == 0).all()
    np.testing.assert_array_equal(out[~hidden], before[~hidden])


def test_sanitize_pixels_leaves_rgb_alone_and_copies_read_only_input() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert sanitize_pixels(rgb) is rgb
    frozen = np.array(noisy_rgba(seed=4))
    frozen.flags.writeable = False
    cleaned = sanitize_pixels(frozen)
    assert cleaned is not frozen and (cleaned[frozen[..., 3] == 0] == 0).all()


@pytest.mark.parametrize(("fmt", "png_encoder"), ALL_ENCODINGS)
def test_encode_pixels_matches_encode_and_keeps_lossless_pixels(fmt: Any, png_encoder: Any) -> None:
    pixels = sanitize_pixels(np.array(noisy_rgba(seed=5, size=(40, 30))))
    encoded = encode_pixels(pixels, fmt, png_encoder=png_encoder)
    assert (encoded.width, encoded.height) == (40, 30)
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    assert_no_metadata(encoded)
    if fmt != "jpeg":
        with Image.open(io.BytesIO(encoded.data)) as decoded:
            np.testing.assert_array_equal(np.array(decoded.convert("RGBA")), pixels)


def test_encode_output_sanitises_encoded_bytes_from_other_save_nodes() -> None:
    encoded = encode_output(dirty_png(), "png", "fpng")
    assert_no_metadata(encoded)
    with Image.open(io.BytesIO(encoded.data)) as decoded:
        pixels = np.array(decoded)
    assert (pixels[pixels[..., 3] == 0] == 0).all()


def test_encode_pixels_refuses_other_arrays() -> None:
    with pytest.raises(ValueError, match="8-bit RGB or RGBA"):
        encode_pixels(np.zeros((4, 4, 2), np.uint8), "png")
    with pytest.raises(ValueError, match="8-bit RGB or RGBA"):
        encode_pixels(np.zeros((4, 4, 3), np.float32), "png")
