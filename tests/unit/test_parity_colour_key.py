"""The torch colour-key port (simplypng.ops.colour_key) against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from simplypng.ops import colour_key as port  # noqa: E402
from simplypng.ops.errors import InvalidColourError  # noqa: E402

from tests.reference_ops import colour_key as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402

pytestmark = pytest.mark.torch

KEY = "#12abef"


def _image() -> np.ndarray:
    """Noise, a patch of the key colour, and pixels at exactly 16 and 17 units from it."""
    image = np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)
    key = np.array([0x12, 0xAB, 0xEF], np.float32)
    image[10:20, 5:30] = key / 255
    image[30, :35] = (key - np.array([0, 0, 16], np.float32)) / 255
    image[31, :35] = (key - np.array([0, 0, 17], np.float32)) / 255
    image[32, :35] = (key + np.array([0, 12, 0], np.float32)) / 255
    return image


@pytest.mark.parametrize("colour", ["#FFFFFF", "12abEF", " #000000 ", "#a0B1c2"])
def test_parse_hex_matches(colour):
    got = port.parse_hex(colour)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), ref.parse_hex(colour))


@pytest.mark.parametrize("colour", ["#fff", "red", "#12345g", "", "#1234567"])
def test_parse_hex_rejects_what_the_reference_rejects(colour):
    with pytest.raises(InvalidColourError):
        ref.parse_hex(colour)
    with pytest.raises(InvalidColourError):
        port.parse_hex(colour)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("tolerance", "softness"), [(0, 0), (16, 0), (16.5, 0), (30, 40), (10, 1e-3)]
)
def test_key_alpha_is_exact(device, tolerance, softness):
    image = _image()
    key = port.parse_hex(KEY, device)
    assert key.device.type == device
    got = port.key_alpha(torch.from_numpy(image).to(device), key, tolerance, softness)
    want = ref.key_alpha(image, ref.parse_hex(KEY), tolerance, softness)
    np.testing.assert_array_equal(got.cpu().numpy(), want)
    assert 0 < want.mean() < 1  # both keyed and kept pixels


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("tolerance", "softness"), [(16, 0), (30, 40), (0, 255)])
def test_colour_key_is_exact(device, tolerance, softness):
    image = _image()
    out = port.colour_key(torch.from_numpy(image).to(device), KEY, tolerance, softness)
    assert out.device.type == device and out.dtype == torch.float32
    want = ref.colour_key(image, KEY, tolerance, softness)
    np.testing.assert_array_equal(out.cpu().numpy(), want)
    assert (want[..., 3] == 0).any() and (want[..., 3] == 1).any()


@pytest.mark.parametrize("device", DEVICES)
def test_colour_key_ignores_an_input_alpha_channel(device):
    rgba = np.concatenate([_image(), np.full((50, 70, 1), 0.5, np.float32)], -1)
    out = port.colour_key(torch.from_numpy(rgba).to(device), KEY, 20, 5)
    np.testing.assert_array_equal(out.cpu().numpy(), ref.colour_key(rgba, KEY, 20, 5))
