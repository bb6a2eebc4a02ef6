"""White-background layout: exact white, subject fill fraction, centring, contact shadow."""

import numpy as np
import pytest
from simplypng.ops.errors import NoSubjectError

from tests.reference_ops.both import both_implementations
from tests.reference_ops.ecomm import layout_box, white_background

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(globals(), "ecomm", ("white_background",))

COLOUR = np.array([0.2, 0.4, 0.6], np.float32)


def _donut(width: int = 40, height: int = 30) -> np.ndarray:
    """A width x height opaque frame (10 px thick) with a transparent hole, on a 200x100 canvas."""
    rgba = np.zeros((100, 200, 4), np.float32)
    rgba[20 : 20 + height, 50 : 50 + width, :3] = COLOUR
    rgba[20 : 20 + height, 50 : 50 + width, 3] = 1.0
    rgba[30 : 10 + height, 60 : 40 + width, 3] = 0.0
    return rgba


def _non_white_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((rgb < 1.0).any(axis=-1))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_subject_fills_the_asked_fraction_centred_on_pure_white():
    out = white_background(_donut(), fill=0.85, canvas_width=1000, canvas_height=800, shadow=False)
    assert out.shape == (800, 1000, 3)
    x0, y0, x1, y1 = _non_white_box(out)
    # Width limits: 0.85 * 1000 = 850 px wide; height 30 * 850 / 40 = 637.5.
    assert abs((x1 - x0) - 850) <= 1
    assert abs((y1 - y0) - 637.5) <= 1
    assert abs(x0 - (1000 - x1)) <= 1 and abs(y0 - (800 - y1)) <= 1
    outside = np.ones(out.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (out[outside] == 1.0).all()
    assert (out[400, 500] == 1.0).all()  # inside the hole: the subject is transparent there
    np.testing.assert_allclose(out[y0 + 40, 500], COLOUR, atol=1 / 255)  # solid frame


def test_the_longer_relative_side_is_the_one_that_fills():
    tall = _donut(width=20, height=60)
    out = white_background(tall, fill=0.5, canvas_width=1000, canvas_height=1000, shadow=False)
    x0, y0, x1, y1 = _non_white_box(out)
    assert abs((y1 - y0) - 500) <= 1
    assert abs((x1 - x0) - 500 / 3) <= 1


def test_values_are_8bit_exact():
    out = white_background(_donut(), 0.85, 1000, 800, shadow=False)
    np.testing.assert_array_equal(np.round(out * 255) / 255, out)
    assert ((out * 255).astype(np.uint8) == np.round(out * 255)).all()  # SaveImage truncates


def test_contact_shadow_darkens_only_around_the_base():
    out = white_background(_donut(), 0.6, 1000, 1000, shadow=True)
    plain = white_background(_donut(), 0.6, 1000, 1000, shadow=False)
    darker = (out < plain).any(axis=-1)
    ys, _ = np.nonzero(darker)
    _, y0, _, y1 = _non_white_box(plain)
    assert darker.sum() > 100
    assert ys.min() > (y0 + y1) / 2  # only in the lower half and below
    assert (out[:100] == 1.0).all() and (out[:, :50] == 1.0).all()


def test_layout_box_rounding():
    assert layout_box((0, 0, 40, 30), 0.85, 1000, 800) == (75, 81, 850, 638)


def test_no_subject_is_a_clear_error():
    with pytest.raises(NoSubjectError):
        white_background(np.zeros((10, 10, 4), np.float32), 0.85, 1000, 1000, False)
