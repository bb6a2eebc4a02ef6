"""The torch alpha helpers (simplypng.ops.alpha) against the numpy reference tests/reference_ops/alpha.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from scipy import ndimage  # noqa: E402
from simplypng.ops import alpha as port  # noqa: E402
from torch import Tensor  # noqa: E402

from tests.reference_ops import alpha as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402

pytestmark = pytest.mark.torch

# `over` is float32 arithmetic in both, in the same order: allow a few ulps.
FLOAT_ATOL = 1e-6


def _t(array: np.ndarray, device: str) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _np(tensor: Tensor) -> np.ndarray:
    return tensor.cpu().numpy()


def _values(seed: int = 0) -> np.ndarray:
    """Noise beyond 0..1, exact k/255 values, half steps and the snap thresholds."""
    rng = np.random.default_rng(seed)
    k = np.arange(256, dtype=np.float32)
    special = np.concatenate(
        [
            k / 255,
            (k + 0.5) / 255,
            np.array([1 / 255, 1 - 1 / 255, 0.9999, 1e-4, 0.0, 1.0, -0.1, 1.1], np.float32),
            np.nextafter(np.float32(1 / 255), np.float32(0)) * np.ones(1, np.float32),
        ]
    ).astype(np.float32)
    noise = rng.uniform(-0.5, 1.5, 97 * 131 - special.size).astype(np.float32)
    return np.concatenate([special, noise]).reshape(97, 131)


@pytest.mark.parametrize("device", DEVICES)
def test_to_8bit_grid_is_exact(device):
    values = _values()
    got = _np(port.to_8bit_grid(_t(values, device)))
    np.testing.assert_array_equal(got, ref.to_8bit_grid(values))
    rgb = _values(1)[..., None].repeat(3, axis=2)
    np.testing.assert_array_equal(_np(port.to_8bit_grid(_t(rgb, device))), ref.to_8bit_grid(rgb))


@pytest.mark.parametrize("device", DEVICES)
def test_snap_alpha_is_exact(device):
    values = _values(2)
    got = port.snap_alpha(_t(values, device))
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(_np(got), ref.snap_alpha(values))


def _bbox_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    empty = np.zeros((97, 131), np.float32)
    full = np.ones((97, 131), np.float32)
    single = empty.copy()
    single[50, 70] = 0.5
    corner = empty.copy()
    corner[-1, -1] = 1.0
    border = empty.copy()
    border[0, 10:20] = 1.0
    border[30:40, 0] = 1.0
    faint = rng.random((64, 48)).astype(np.float32) * (1 / 255)  # all below the threshold
    return [empty, full, single, corner, border, faint, rng.random((7, 1)).astype(np.float32)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(len(_bbox_cases())))
@pytest.mark.parametrize("threshold", [ref.VISIBLE_ALPHA, 0.5])
def test_alpha_bbox_is_exact(device, case, threshold):
    alpha = _bbox_cases()[case]
    assert port.alpha_bbox(_t(alpha, device), threshold) == ref.alpha_bbox(alpha, threshold)


@pytest.mark.parametrize("device", DEVICES)
def test_over_matches(device):
    rng = np.random.default_rng(4)
    top_rgb, bottom_rgb = rng.random((2, 97, 131, 3), dtype=np.float32)
    top_a, bottom_a = rng.random((2, 97, 131), dtype=np.float32)
    top_a[:20] = 0.0
    bottom_a[:10] = 0.0  # rows where both are transparent: colour 0
    top_a[40:50] = 1.0
    want_rgb, want_a = ref.over(top_rgb, top_a, bottom_rgb, bottom_a)
    got_rgb, got_a = port.over(*(_t(x, device) for x in (top_rgb, top_a, bottom_rgb, bottom_a)))
    np.testing.assert_allclose(_np(got_rgb), want_rgb, rtol=0, atol=FLOAT_ATOL)
    np.testing.assert_allclose(_np(got_a), want_a, rtol=0, atol=FLOAT_ATOL)
    assert (_np(got_rgb)[:10] == 0).all()


def _fill_cases() -> list[np.ndarray]:
    """Alphas: a soft disc, sparse dots, a subject touching the border, one visible pixel,
    a thin strand, and a visible frame around a hole."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:97, 0:131].astype(np.float32)
    disc = np.clip(30 - np.hypot(yy - 40, xx - 70), 0, 1).astype(np.float32)
    dots = (rng.random((97, 131)) > 0.995).astype(np.float32)
    edge = np.zeros((64, 90), np.float32)
    edge[:, :12] = 1.0
    one = np.zeros((50, 41), np.float32)
    one[49, 0] = 0.6
    strand = np.zeros((120, 80), np.float32)
    strand[:, 40] = 0.3
    frame = np.ones((60, 60), np.float32)
    frame[5:55, 5:55] = 0.0
    return [disc, dots, edge, one, strand, frame]


def _coded_rgb(height: int, width: int) -> np.ndarray:
    """Colours that name their pixel: index = r + 256 g + 65536 b, each channel k/255."""
    index = np.arange(height * width).reshape(height, width)
    planes = [index % 256, (index // 256) % 256, index // 65536]
    return (np.stack(planes, axis=-1) / 255).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(len(_fill_cases())))
def test_fill_transparent_uses_a_nearest_visible_colour(device, case):
    """The guaranteed property: visible pixels keep their colour bit-exactly, and every hidden
    pixel gets the colour of a visible pixel at exactly the minimal Euclidean distance (ties
    may pick a different pixel than scipy)."""
    alpha = _fill_cases()[case]
    height, width = alpha.shape
    rgb = _coded_rgb(height, width)
    got = _np(port.fill_transparent(_t(rgb, device), _t(alpha, device)))
    visible = alpha >= ref.VISIBLE_ALPHA
    np.testing.assert_array_equal(got[visible], rgb[visible])
    codes = np.rint(got * 255).astype(np.int64)
    source = codes[..., 0] + 256 * codes[..., 1] + 65536 * codes[..., 2]
    sy, sx = np.divmod(source, width)
    assert visible[sy, sx].all()
    yy, xx = np.mgrid[0:height, 0:width]
    _, (iy, ix) = ndimage.distance_transform_edt(~visible, return_indices=True)
    np.testing.assert_array_equal((sy - yy) ** 2 + (sx - xx) ** 2, (iy - yy) ** 2 + (ix - xx) ** 2)
    # Where the nearest visible pixel is unique the result equals the numpy reference.
    want = ref.fill_transparent(rgb, alpha)
    same_source = (sy == iy) & (sx == ix)
    np.testing.assert_array_equal(got[same_source], want[same_source])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_fill_transparent_with_nothing_or_everything_visible_copies(device, value):
    rgb = np.random.default_rng(6).random((31, 17, 3), dtype=np.float32)
    alpha = np.full((31, 17), value, np.float32)
    got = _np(port.fill_transparent(_t(rgb, device), _t(alpha, device)))
    np.testing.assert_array_equal(got, ref.fill_transparent(rgb, alpha))
