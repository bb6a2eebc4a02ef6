"""Matte refinement on synthetic composites with known foreground, background and alpha."""

import numpy as np
import pytest

from tests.reference_ops.both import both_implementations
from tests.reference_ops.matting import (
    estimate_foreground,
    guide_params,
    guided_refine,
    refine_matte,
)
from tests.reference_ops.resize import resize

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(
    globals(), "matting", ("estimate_foreground", "guided_refine", "refine_matte")
)

SIZE = 128
RED = np.array([0.9, 0.15, 0.1], np.float32)
GREEN = np.array([0.1, 0.8, 0.2], np.float32)


def _disc(radius: float, ramp: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    distance = np.hypot(yy - SIZE / 2, xx - SIZE / 2)
    return np.clip((radius - distance) / ramp + 0.5, 0.0, 1.0).astype(np.float32)


@pytest.fixture
def scene():
    """A textured red disc with a 3 px soft edge over green: I = a*F + (1-a)*B."""
    alpha = _disc(40.0)
    xx = np.mgrid[:SIZE, :SIZE][1].astype(np.float32)
    fg = np.broadcast_to(RED, (SIZE, SIZE, 3)).copy()
    fg[..., 1] += 0.1 * np.sin(xx / 7.0)
    bg = np.broadcast_to(GREEN, (SIZE, SIZE, 3)).copy()
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), fg, alpha


def _error(colours: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(colours - truth)[where].mean())


def test_foreground_estimation_removes_background_fringe(scene):
    image, fg, alpha = scene
    edge = (alpha > 0.05) & (alpha < 1.0)
    naive = _error(image, fg, edge)
    rgba = refine_matte(image, alpha, halo=2)
    refined = _error(rgba[..., :3], fg, edge)
    assert naive > 0.2  # the observed edge colours really are contaminated
    assert refined < naive / 10
    assert float(np.abs(rgba[..., :3] - fg)[edge].max()) < 0.1
    np.testing.assert_allclose(rgba[..., 3], alpha, atol=1 / 255)


def test_halo_zero_keeps_observed_colours(scene):
    image, _, alpha = scene
    rgba = refine_matte(image, alpha, halo=0)
    visible = rgba[..., 3] > 0
    # Observed colours, only rounded to the 8-bit grid.
    np.testing.assert_allclose(rgba[..., :3][visible], image[visible], atol=0.5 / 255 + 1e-6)


def test_halo_band_removes_spill_from_an_oversized_mask(scene):
    image, fg, alpha = scene
    too_big = _disc(42.0)  # the mask claims 2 px of background as subject
    band = (too_big >= 0.5) & (alpha < 0.99)
    plain = _error(refine_matte(image, too_big, halo=0)[..., :3], fg, band)
    cleaned = refine_matte(image, too_big, halo=3)
    assert _error(cleaned[..., :3], fg, band) < 0.35 * plain
    deep_inside = _disc(32.0) >= 1.0  # more than `halo` px inside: untouched
    np.testing.assert_allclose(
        cleaned[..., :3][deep_inside], image[deep_inside], atol=0.5 / 255 + 1e-6
    )


def test_opaque_pixels_keep_their_exact_colour(scene):
    image, _, alpha = scene
    foreground = estimate_foreground(image, alpha)
    opaque = alpha >= 1.0
    np.testing.assert_array_equal(foreground[opaque], image[opaque])


def test_guided_refine_snaps_an_upsampled_mask_to_the_image_edges():
    yy, xx = np.mgrid[:256, :256]
    truth = ((np.abs(yy - 128) < 70) & (np.abs(xx - 128) < 50)).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.01, (256, 256, 3)).astype(np.float32)
    image = truth[..., None] * RED + (1 - truth[..., None]) * GREEN + noise
    # As the segmenter does for a large input: predict at 1/4 resolution, upsample bilinearly.
    coarse = np.clip(resize(resize(truth, (64, 64), "box"), (256, 256), "bilinear"), 0, 1)
    refined = guided_refine(image, coarse, radius=8, subsample=4)
    before = float(np.abs(coarse - truth).mean())
    after = float(np.abs(refined - truth).mean())
    assert after < 0.5 * before
    far = (np.abs(yy - 128) < 40) & (np.abs(xx - 128) < 20)  # well inside, away from edges
    np.testing.assert_array_equal(refined[far], coarse[far])


def test_guide_params_follow_the_segmenter_upsampling_factor():
    assert guide_params(800, 600) == (2, 1)
    assert guide_params(4096, 3000) == (8, 4)


def test_white_at_half_alpha_stays_white_over_white():
    white = np.ones((32, 32, 3), np.float32)
    rgba = refine_matte(white, np.full((32, 32), 0.5, np.float32), halo=2)
    assert (rgba[..., :3] == 1.0).all()
    over_white = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    assert (np.round(over_white * 255) == 255).all()  # not the 191 grey of premultiplied output


def test_colours_are_straight_not_premultiplied():
    red = np.broadcast_to(RED, (16, 16, 3)).astype(np.float32)
    rgba = refine_matte(red, np.full((16, 16), 0.5, np.float32), halo=1)
    np.testing.assert_allclose(rgba[..., :3], red, atol=0.5 / 255 + 1e-6)


def test_hidden_background_is_zeroed(scene):
    image, _, alpha = scene
    rgba = refine_matte(image, alpha, halo=2)
    hidden = rgba[..., 3] == 0
    assert hidden.any()
    assert (rgba[..., :3][hidden] == 0).all()
