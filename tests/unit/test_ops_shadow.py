"""Shadows under a subject on a transparent canvas."""

import numpy as np
import pytest

from tests.reference_ops.both import both_implementations
from tests.reference_ops.shadow import add_shadow, shadow_coverage, shift

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(
    globals(), "shadow", ("add_shadow", "shadow_coverage", "shift")
)

BLUE = np.array([0.1, 0.2, 0.9], np.float32)


@pytest.fixture
def subject() -> np.ndarray:
    """An opaque blue 30x30 square at x, y in [20, 50) on a transparent 100x100 canvas."""
    rgba = np.zeros((100, 100, 4), np.float32)
    rgba[20:50, 20:50, :3] = BLUE
    rgba[20:50, 20:50, 3] = 1.0
    return rgba


def test_hard_shadow_is_offset_right_under_the_subject(subject):
    out = add_shadow(subject, "hard", dx=10, dy=0, opacity=0.5, blur=12.0)
    alpha = out[..., 3]
    shadow_only = (slice(20, 50), slice(50, 60))  # right of the subject, inside the offset
    np.testing.assert_allclose(alpha[shadow_only], 0.5, atol=0.5 / 255)
    assert (out[shadow_only][..., :3] == 0).all()  # black shadow
    # The subject is on top and unchanged.
    np.testing.assert_allclose(out[20:50, 20:50, :3], subject[20:50, 20:50, :3], atol=0.5 / 255)
    assert (alpha[20:50, 20:50] == 1.0).all()
    # Transparent everywhere else: left of the subject, above, below, beyond the shadow.
    assert (alpha[:, :20] == 0).all()
    assert (alpha[:20] == 0).all()
    assert (alpha[50:] == 0).all()
    assert (alpha[:, 60:] == 0).all()


def test_drop_shadow_is_blurred_and_respects_opacity(subject):
    out = add_shadow(subject, "drop", dx=12, dy=6, opacity=0.4, blur=6.0)
    shadow = np.where(subject[..., 3] > 0, 0.0, out[..., 3])
    assert shadow.max() <= 0.4 + 1 / 255
    assert 0 < shadow[35, 55] < 0.4 + 1 / 255
    ys, xs = np.nonzero(shadow)
    weights = shadow[ys, xs]
    assert np.average(xs, weights=weights) > 50  # to the right of the subject's right edge
    assert np.average(ys, weights=weights) > 35  # and lower than its centre
    # Soft: values between 0 and the opacity appear at the blurred edge.
    assert ((shadow > 0.02) & (shadow < 0.38)).sum() > 50
    assert (out[:10, :10, 3] == 0).all()


def test_soft_contact_shadow_lies_on_the_subject_base(subject):
    coverage = shadow_coverage(subject[..., 3], "soft", dx=0, dy=0, blur=4.0)
    assert coverage is not None
    rows = coverage.sum(axis=1)
    centre_row = float(np.average(np.arange(100), weights=rows))
    assert abs(centre_row - 49) < 3  # flattened onto the base line (last subject row is 49)
    assert rows[:35].sum() == 0  # nothing in the upper half of the subject or above it
    out = add_shadow(subject, "soft", dx=0, dy=0, opacity=0.5, blur=4.0)
    assert out[52, 35, 3] > 0  # visible just below the subject


def test_a_semi_transparent_subject_is_composited_over_its_shadow():
    rgba = np.zeros((20, 40, 4), np.float32)
    rgba[5:15, 5:15] = [1.0, 0.0, 0.0, 0.5]
    out = add_shadow(rgba, "hard", dx=5, dy=0, opacity=0.5, blur=0.0)
    # A half-transparent subject casts a shadow of 0.5 * opacity = 0.25. Where both overlap:
    # alpha = 0.5 + 0.25 * (1 - 0.5) = 0.625; straight colour = red * 0.5 / 0.625.
    np.testing.assert_allclose(out[10, 12, 3], 0.625, atol=0.5 / 255)
    np.testing.assert_allclose(out[10, 12, :3], [0.8, 0, 0], atol=0.5 / 255)
    np.testing.assert_allclose(out[10, 17], [0, 0, 0, 0.25], atol=0.5 / 255)  # shadow alone
    np.testing.assert_allclose(out[10, 7], rgba[10, 7], atol=0.5 / 255)  # no shadow under here


def test_none_leaves_the_image_unchanged(subject):
    np.testing.assert_array_equal(add_shadow(subject, "none", 12, 18, 0.5, 12.0), subject)


def test_shift_moves_and_clips():
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)
    moved = shift(plane, 1, 2)
    np.testing.assert_array_equal(moved[2, 1:], plane[0, :3])
    assert moved[:2].sum() == 0 and moved[:, 0].sum() == 0
    assert shift(plane, 10, 0).sum() == 0
