"""Cutout crop arithmetic, canvas rules and speck removal."""

import numpy as np
import pytest
from simplypng.ops.errors import NoSubjectError

from tests.reference_ops.both import both_implementations
from tests.reference_ops.cutout import Canvas, cutout, cutout_canvas, remove_specks

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(globals(), "cutout", ("cutout", "remove_specks"))

BOX = (50, 20, 90, 50)  # a 40 x 30 subject


@pytest.mark.parametrize(
    ("padding", "unit", "square", "min_size", "expected"),
    [
        (0, "px", False, 0, Canvas(50, 20, 40, 30)),
        (5, "px", False, 0, Canvas(45, 15, 50, 40)),
        (10, "percent", False, 0, Canvas(46, 16, 48, 38)),  # 10% of the long side = 4 px
        (5, "px", True, 0, Canvas(45, 10, 50, 50)),  # the short side grows, centred
        (5, "px", False, 100, Canvas(20, -5, 100, 80)),  # long side to 100, aspect kept
        (5, "px", True, 100, Canvas(20, -15, 100, 100)),
        (5, "px", False, 30, Canvas(45, 15, 50, 40)),  # already larger than min_size
    ],
)
def test_canvas_arithmetic(padding, unit, square, min_size, expected):
    assert cutout_canvas(BOX, padding, unit, square, min_size) == expected


def _subject_image() -> np.ndarray:
    rgba = np.zeros((100, 200, 4), np.float32)
    rgba[20:50, 50:90] = [0.8, 0.3, 0.2, 1.0]
    return rgba


def test_cutout_crops_tight_with_padding_and_transparent_surroundings():
    out = cutout(_subject_image(), 5, "px", square=False, min_size=0, min_region=0)
    assert out.shape == (40, 50, 4)
    assert (out[5:35, 5:45, 3] == 1).all()
    assert out[..., 3].sum() == 30 * 40  # only the subject is opaque
    np.testing.assert_allclose(out[10, 10, :3], [0.8, 0.3, 0.2], rtol=1e-6)


def test_min_size_pads_the_canvas_without_scaling_the_subject():
    out = cutout(_subject_image(), 5, "px", square=True, min_size=100, min_region=0)
    assert out.shape == (100, 100, 4)
    ys, xs = np.nonzero(out[..., 3])
    assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (30, 40)  # not scaled
    assert (ys.min(), xs.min()) == (35, 30)  # centred


def test_padding_past_the_image_border_is_transparent():
    rgba = np.zeros((40, 40, 4), np.float32)
    rgba[0:10, 0:10] = [1, 1, 1, 1]
    out = cutout(rgba, 50, "percent", square=False, min_size=0, min_region=0)
    assert out.shape == (20, 20, 4)
    assert (out[:5, :, 3] == 0).all() and (out[:, :5, 3] == 0).all()
    assert (out[5:15, 5:15, 3] == 1).all()


def test_specks_below_min_region_are_removed_with_their_soft_edges():
    rgba = _subject_image()
    rgba[80:83, 150:153] = [0.8, 0.3, 0.2, 1.0]  # a 9 px speck
    rgba[79, 149:154, 3] = 0.3  # its soft fringe
    cleaned = remove_specks(rgba[..., 3], min_region=64)
    assert cleaned[75:, 140:].sum() == 0
    np.testing.assert_array_equal(cleaned[20:50, 50:90], 1.0)
    kept = cutout(rgba, 0, "px", square=False, min_size=0, min_region=0)
    dropped = cutout(rgba, 0, "px", square=False, min_size=0, min_region=64)
    assert kept.shape[:2] == (63, 104)  # the speck (rows 79-82, cols 149-153) widens the box
    assert dropped.shape[:2] == (30, 40)


def test_the_largest_part_is_kept_even_when_all_are_small():
    alpha = np.zeros((50, 50), np.float32)
    alpha[5:9, 5:9] = 1.0  # 16 px
    alpha[30:32, 30:32] = 1.0  # 4 px
    cleaned = remove_specks(alpha, min_region=1000)
    assert cleaned[5:9, 5:9].sum() == 16
    assert cleaned[30:32, 30:32].sum() == 0


def test_an_empty_matte_is_a_clear_error():
    with pytest.raises(NoSubjectError, match="no subject"):
        cutout(np.zeros((10, 10, 4), np.float32), 4, "percent", False, 0, 64)
