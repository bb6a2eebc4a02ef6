"""Exact long-edge resizing with alpha kept and hidden colours kept out of the edge."""

import numpy as np

from tests.reference_ops.alpha import fill_transparent
from tests.reference_ops.both import both_implementations
from tests.reference_ops.resize import long_edge_size, needs_model, resize_long_edge

# Every test below runs on the numpy reference and on the shipped torch op.
implementation = both_implementations(globals(), "resize", ("resize_long_edge",))


def test_long_edge_size_is_exact_and_keeps_the_aspect_ratio():
    assert long_edge_size(300, 200, 2048) == (2048, 1365)
    assert long_edge_size(200, 300, 2048) == (1365, 2048)
    assert long_edge_size(4000, 10, 2048) == (2048, 5)
    assert long_edge_size(5000, 1, 256) == (256, 1)


def test_needs_model_only_below_the_target():
    assert needs_model(512, 384, 2048)
    assert not needs_model(2048, 100, 2048)
    assert not needs_model(3000, 2000, 2048)


def _half_transparent(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.zeros((height, width, 3), np.float32)  # black hides under the transparent half
    rgb[:, width // 2 :] = 1.0
    alpha = np.zeros((height, width), np.float32)
    alpha[:, width // 2 :] = 1.0
    return rgb, alpha


def test_upscale_to_exact_size_preserves_alpha():
    rgb, alpha = _half_transparent(300, 200)
    out_rgb, out_alpha = resize_long_edge(rgb, alpha, 2048)
    assert out_rgb.shape == (1365, 2048, 3)
    assert out_alpha is not None and out_alpha.shape == (1365, 2048)
    assert (out_alpha[:, :1000] == 0).all()
    assert (out_alpha[:, 1050:] == 1).all()


def test_hidden_colour_does_not_bleed_into_the_edge():
    rgb, alpha = _half_transparent(300, 200)
    out_rgb, out_alpha = resize_long_edge(rgb, alpha, 2048)
    edge = out_alpha > 0.05
    assert out_rgb[edge].min() > 0.99  # white stays white, no grey from the black underneath


def test_model_output_and_alpha_at_different_sizes_land_on_one_size():
    rgb, alpha = _half_transparent(300, 200)
    model_rgb = np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)  # stands in for a 4x model
    out_rgb, out_alpha = resize_long_edge(model_rgb, alpha, 2048)
    assert out_rgb.shape[:2] == out_alpha.shape == (1365, 2048)


def test_downscale_and_no_alpha(implementation):
    rgb = np.full((100, 3000, 3), 0.5, np.float32)
    out_rgb, out_alpha = resize_long_edge(rgb, None, 2048)
    assert out_rgb.shape == (68, 2048, 3) and out_alpha is None
    # 0.5 * 255 is exactly a rounding tie: numpy's float64 sums land on it (and round half to
    # even, 128), torch's float32 sums a hair either side (127 or 128).
    step = 1e-6 if implementation == "numpy" else 1 / 255 + 1e-6
    np.testing.assert_allclose(out_rgb, 128 / 255, atol=step)


def test_fill_transparent_copies_the_nearest_visible_colour():
    rgb, alpha = _half_transparent(10, 4)
    rgb[:, 7:] = [0.2, 0.4, 0.6]
    filled = fill_transparent(rgb, alpha)
    np.testing.assert_array_equal(filled[:, :5], np.broadcast_to([1.0, 1.0, 1.0], (4, 5, 3)))
    np.testing.assert_array_equal(filled[:, 5:], rgb[:, 5:])
