"""Colour keying: the keyed colour goes, far colours stay, a linear ramp in between."""

import numpy as np
import pytest
from simplypng.ops.errors import InvalidColourError

from tests.reference_ops.both import both_implementations
from tests.reference_ops.colour_key import colour_key, parse_hex

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(globals(), "colour_key", ("colour_key",))


def _row_at_distances(distances: list[float]) -> np.ndarray:
    """Pixels whose RGB distance (0..255 units) from white is exactly each given value."""
    pixels = np.ones((1, len(distances), 3), np.float32)
    pixels[0, :, 2] = (255.0 - np.array(distances, np.float32)) / 255.0
    return pixels


def test_keyed_colour_is_transparent_far_colours_opaque_soft_ramp_between():
    distances = [0, 10, 16, 20, 24, 28, 32, 100, 255]
    rgba = colour_key(_row_at_distances(distances), "#FFFFFF", tolerance=16, softness=16)
    alpha = rgba[0, :, 3]
    np.testing.assert_allclose(alpha, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1], atol=0.5 / 255)
    assert (np.round(alpha * 255)[-3:] == 255).all()
    assert (rgba[0, :3, :3] == 0).all()  # hidden colours are zeroed
    np.testing.assert_array_equal(rgba[0, 4:, :3], _row_at_distances(distances)[0, 4:])


def test_zero_softness_is_a_hard_key():
    alpha = colour_key(_row_at_distances([0, 16, 17, 50]), "#ffffff", 16, 0)[0, :, 3]
    np.testing.assert_array_equal(alpha, [0, 0, 1, 1])


def test_any_key_colour():
    image = np.zeros((2, 2, 3), np.float32)
    image[0, 0] = [0, 1, 0]
    alpha = colour_key(image, "00ff00", 10, 10)[..., 3]
    assert alpha[0, 0] == 0 and (alpha.ravel()[1:] == 1).all()


@pytest.mark.parametrize("bad", ["#fff", "red", "#12345g", ""])
def test_bad_colours_are_clear_errors(bad):
    with pytest.raises(InvalidColourError):
        parse_hex(bad)
