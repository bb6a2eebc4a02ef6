"""The torch matting port (simplypng.ops.matting) against the numpy reference tests/reference_ops/matting.py.

Scenes are synthetic composites I = a F + (1 - a) B: soft discs, thin strands, subjects
touching the border or small in a large frame, hard binary masks, odd sizes. The CPU port
streams the image in strips of rows; the `strips` fixture also runs every case with tiny
strips, so strip borders, the blur-fusion ring and the halo band cross many of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from scipy import ndimage  # noqa: E402
from simplypng.ops import matting as port  # noqa: E402
from torch import Tensor  # noqa: E402

from tests.reference_ops import matting as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES, GRID_STEP  # noqa: E402

pytestmark = pytest.mark.torch

# Float outputs: float32 in both, but scipy's filters sum in double and numpy solves the 3x3
# systems by LU. Filters alone (values 0..1): float32 sums of up to 181 x 181 terms.
FILTER_ATOL = 1e-5
# Blur fusion / halo pull outputs: seen under 1e-6.
FLOAT_ATOL = 2e-5
# The guided filter's solve amplifies rounding by up to 1 / eps: seen under 1e-5.
GUIDED_ATOL = 1e-4


@pytest.fixture(params=["default", "tiny"])
def strips(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Default CPU strips, or strips of a few rows (each filter's minimum)."""
    if request.param == "tiny":
        monkeypatch.setattr(port, "_STRIP_BYTES", 1)
    yield request.param


# Scenes also run with tiny strips (the others only with the default ones, for speed).
TINY_STRIP_SCENES = ("disc", "noisy", "small", "border", "margins")


def _skip_tiny(strips: str, scene: str) -> None:
    if strips == "tiny" and scene not in TINY_STRIP_SCENES:
        pytest.skip("tiny strips run on a subset of scenes")


def _soft_disc(
    height: int, width: int, cy: float, cx: float, radius: float, ramp: float
) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.clip((radius - np.hypot(yy - cy, xx - cx)) / ramp + 0.5, 0, 1)


def _compose(alpha: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image of a textured foreground over a noisy background through `alpha`."""
    rng = np.random.default_rng(seed)
    height, width = alpha.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fg = np.stack(
        [0.88 + 0.12 * np.sin(xx / 5), 0.21 + 0.15 * np.cos(yy / 7), 0.13 + 0 * xx], axis=-1
    )
    bg = rng.random((height, width, 3)) * 0.35 + np.array([0.12, 0.66, 0.27])
    a = alpha[..., None]
    return (a * fg + (1 - a) * bg).astype(np.float32), alpha.astype(np.float32)


def _scene(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    if name == "disc":  # soft disc with strands, odd size
        alpha = _soft_disc(97, 131, 45, 70, 30, 3)
        alpha[:, 20] = np.maximum(alpha[:, 20], 0.6)
        alpha[70, :] = np.maximum(alpha[70, :], 0.3)
    elif name == "noisy":  # soft edge with noise on it, background noise under 1/255
        alpha = _soft_disc(128, 128, 60, 64, 40, 6)
        alpha += rng.normal(0, 0.05, alpha.shape) * (alpha > 0) * (alpha < 1)
        alpha += rng.random(alpha.shape) * 0.003
    elif name == "small":  # small subject in a large frame, near a corner
        alpha = _soft_disc(300, 257, 40, 215, 18, 2)
    elif name == "border":  # subject cut by the top and left borders
        alpha = _soft_disc(150, 180, 10, 5, 70, 4)
    elif name == "binary":  # hard edge: no soft pixels, only the halo band
        alpha = (_soft_disc(120, 100, 60, 50, 35, 1) > 0.5).astype(np.float32)
    elif name == "strands":  # only thin strands, alpha < 0.5: no inside, no halo pull
        alpha = np.zeros((90, 110), np.float32)
        alpha[:, ::17] = 0.4
        alpha[::23, :] = 0.25
    elif name == "opaque":
        alpha = np.ones((40, 60), np.float32)
    elif name == "empty":
        alpha = np.zeros((40, 60), np.float32)
    elif name == "white":  # saturated foreground: blur fusion overshoots 1 and is clipped
        alpha = _soft_disc(80, 96, 40, 50, 25, 8)
        alpha += rng.normal(0, 0.1, alpha.shape) * (alpha > 0) * (alpha < 1)
        alpha = np.clip(alpha, 0, 1).astype(np.float32)
        bg = rng.random((80, 96, 3)).astype(np.float32) * 0.3
        return (alpha[..., None] + (1 - alpha[..., None]) * bg).astype(np.float32), alpha
    elif name == "margins":
        return _margins_scene()
    else:
        raise ValueError(name)
    return _compose(np.clip(alpha, 0, 1), seed=len(name))


def _margins_scene() -> tuple[np.ndarray, np.ndarray]:
    """A small soft subject on a dark background that turns to 1 px stripes 40 px beyond
    its soft edge.

    refine_matte and guided_refine work on the bounding box of the pixels they change, grown
    by their filters' reach (48 px of blur fusion, plus the halo's gaussian; 2 * radius for
    the guided filter). A box grown a pixel too little would reflect a stripe of the other
    phase where the full image has this one, which moves the edge colours by about 1e-3.
    """
    alpha = _soft_disc(220, 240, 110, 118, 22, 3).astype(np.float32)
    image, alpha = _compose(alpha, seed=3)
    soft = (alpha > 0) & (alpha < 1)
    rows, cols = np.flatnonzero(soft.any(axis=1)), np.flatnonzero(soft.any(axis=0))
    yy, xx = np.mgrid[0:220, 0:240]
    near = (
        (yy >= rows[0] - 40) & (yy <= rows[-1] + 40) & (xx >= cols[0] - 40) & (xx <= cols[-1] + 40)
    )
    stripes = ((yy % 2) + (xx % 2)) / 2
    background = np.where(near, 0.05, stripes).astype(np.float32)[..., None]
    image = alpha[..., None] * image + (1 - alpha[..., None]) * background
    return image.astype(np.float32), alpha


SCENES = [
    "disc",
    "noisy",
    "small",
    "border",
    "binary",
    "strands",
    "opaque",
    "empty",
    "white",
    "margins",
]


def _t(array: np.ndarray, device: str) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _np(tensor: Tensor) -> np.ndarray:
    return tensor.cpu().numpy()


def test_guide_params_are_the_same():
    for height in (1, 97, 512, 1024, 1025, 1500, 2048, 2100, 4000, 9000):
        for width in (1, 131, 1024, 1536, 2100, 8192):
            assert port.guide_params(height, width) == ref.guide_params(height, width)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(97, 131), (5, 7), (64, 48, 3), (1, 9, 2)])
@pytest.mark.parametrize("size", [2, 5, 6, 13, 90, 181])
def test_box_mean_is_scipys_uniform_filter(device, strips, shape, size):
    """Reflected borders, even sizes leaning left, windows wider than the image (181 > 97)."""
    array = np.random.default_rng(size).random(shape, dtype=np.float32)
    array[: shape[0] // 3] = 0.0  # all-zero windows must stay exactly zero
    want = ndimage.uniform_filter(array, (size, size) + (1,) * (array.ndim - 2), mode="reflect")
    got = _np(port.box_mean(_t(array, device), size))
    np.testing.assert_allclose(got, want, rtol=0, atol=FILTER_ATOL)
    np.testing.assert_array_equal(got[want == 0], 0.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(97, 131), (6, 9), (64, 48, 4)])
@pytest.mark.parametrize("sigma", [1.0, 2.0, 10.0])
def test_gaussian_blur_is_scipys_gaussian_filter(device, strips, shape, sigma):
    array = np.random.default_rng(int(sigma)).random(shape, dtype=np.float32)
    sigmas = (sigma, sigma) + (0.0,) * (array.ndim - 2)
    want = ndimage.gaussian_filter(array, sigmas)
    got = _np(port.gaussian_blur(_t(array, device), sigma))
    np.testing.assert_allclose(got, want, rtol=0, atol=FILTER_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scene", ["disc", "noisy", "border", "margins"])
@pytest.mark.parametrize(("radius", "subsample"), [(1, 1), (2, 1), (5, 1), (4, 2), (6, 3)])
def test_guided_filter_matches(device, strips, scene, radius, subsample):
    image, alpha = _scene(scene)
    want = ref.guided_filter(image, alpha, radius, subsample=subsample)
    got = _np(port.guided_filter(_t(image, device), _t(alpha, device), radius, subsample=subsample))
    np.testing.assert_allclose(got, want, rtol=0, atol=GUIDED_ATOL)


def _band(alpha: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return ndimage.maximum_filter(alpha, size) - ndimage.minimum_filter(alpha, size) > 0.02


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize(("radius", "subsample"), [(2, 1), (4, 2), (6, 3)])
def test_guided_refine_matches_and_keeps_pixels_off_the_band(
    device, strips, scene, radius, subsample
):
    _skip_tiny(strips, scene)
    image, alpha = _scene(scene)
    want = ref.guided_refine(image, alpha, radius, subsample)
    got = _np(port.guided_refine(_t(image, device), _t(alpha, device), radius, subsample))
    np.testing.assert_allclose(got, want, rtol=0, atol=GUIDED_ATOL)
    off = ~_band(alpha, radius)
    np.testing.assert_array_equal(got[off], np.clip(alpha, 0, 1)[off])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scene", SCENES)
def test_estimate_foreground_matches(device, strips, scene):
    _skip_tiny(strips, scene)
    image, alpha = _scene(scene)
    want = ref.estimate_foreground(image, alpha)
    got = _np(port.estimate_foreground(_t(image, device), _t(alpha, device)))
    np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)
    opaque = alpha >= 1
    np.testing.assert_array_equal(got[opaque], image[opaque])  # exact where alpha is 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("halo", [0, 2, 10])
def test_decontaminate_matches(device, strips, scene, halo):
    _skip_tiny(strips, scene)
    image, alpha = _scene(scene)
    want = ref.decontaminate(image, alpha, halo)
    got = _np(port.decontaminate(_t(image, device), _t(alpha, device), halo))
    np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("halo", [1, 2, 10])
def test_refine_mattes_cropped_decontamination_matches_on_visible_pixels(
    device, strips, scene, halo
):
    """refine_matte decontaminates only the bounding box of the edge grown by the filters'
    reach; on every visible pixel that must equal decontaminate on the whole image, to float
    precision (the 8-bit comparison below could hide a box grown a pixel too little)."""
    _skip_tiny(strips, scene)
    image, alpha = _scene(scene)
    alpha = ref.snap_alpha(alpha)
    want = ref.decontaminate(image, alpha, halo)
    rgb = _t(image, device)
    got = _np(port._matte_colours(rgb, _t(alpha, device), halo, rgb.clone()))
    visible = alpha > 0
    np.testing.assert_allclose(got[visible], np.clip(want[visible], 0, 1), rtol=0, atol=FLOAT_ATOL)


def _assert_on_grid(rgba: np.ndarray) -> None:
    np.testing.assert_array_equal(rgba, np.round(rgba * 255) / 255)


def _assert_matches_reference(got: np.ndarray, image: np.ndarray, mask: np.ndarray, *args) -> None:
    """refine_matte's result against the reference, one 8-bit step apart at most.

    Defringed pixels (0 < alpha < 0.5, halo > 0) take a nearest solid pixel's colour, and
    where several are equally near the two may pick different ones (as fill_transparent): there
    the colour must be, within one step, that of some solid pixel at the minimal distance.
    """
    want = ref.refine_matte(image, mask, *args)
    colour, alpha = ref.matte_parts(image, mask, *args)
    fringe = (alpha > 0) & (alpha < 0.5) if args[0] > 0 else np.zeros(alpha.shape, bool)
    np.testing.assert_allclose(got[~fringe], want[~fringe], rtol=0, atol=GRID_STEP)
    np.testing.assert_allclose(got[..., 3], want[..., 3], rtol=0, atol=GRID_STEP)
    solid = alpha >= 0.5
    if not fringe.any() or not solid.any():
        return
    grid = np.round(np.clip(colour, 0, 1) * 255) / 255
    distance = ndimage.distance_transform_edt(~solid)
    for y, x in zip(*np.nonzero(fringe), strict=True):
        reach = int(np.ceil(distance[y, x]))
        y0, x0 = max(0, y - reach), max(0, x - reach)
        window = (slice(y0, y + reach + 1), slice(x0, x + reach + 1))
        yy, xx = np.nonzero(solid[window])
        d2 = (yy + y0 - y) ** 2 + (xx + x0 - x) ** 2
        nearest = grid[window][yy[d2 == d2.min()], xx[d2 == d2.min()]]
        off = np.abs(nearest - got[y, x, :3]).max(axis=-1)
        assert off.min() <= GRID_STEP + 1e-6, (y, x, got[y, x], nearest)


# (scene, halo, radius, subsample): every scene with the node's default (halo 2, guided), then
# halo 0/1, no guide and the subsampled guide on the scenes where they differ most, and the
# widest halo (10, the slowest) on two.
REFINE_CASES = [(scene, 2, 2, 1) for scene in SCENES]
REFINE_CASES += [
    (scene, halo, radius, subsample)
    for scene in ("disc", "noisy", "small", "border", "binary", "margins")
    for halo, radius, subsample in ((0, 2, 1), (1, 0, 1), (2, 4, 2))
]
REFINE_CASES += [
    (scene, 10, radius, subsample)
    for scene in ("disc", "margins")
    for radius, subsample in ((2, 1), (6, 3))
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("scene", "halo", "radius", "subsample"), REFINE_CASES)
def test_refine_matte_matches_on_the_8bit_grid(device, strips, scene, halo, radius, subsample):
    _skip_tiny(strips, scene)
    image, alpha = _scene(scene)
    want = ref.refine_matte(image, alpha, halo, radius, subsample)
    got = _np(port.refine_matte(_t(image, device), _t(alpha, device), halo, radius, subsample))
    assert got.shape == want.shape and got.dtype == np.float32
    _assert_on_grid(got)
    _assert_matches_reference(got, image, alpha, halo, radius, subsample)
    if radius == 0:  # no float arithmetic on alpha: clip, snap, grid
        np.testing.assert_array_equal(got[..., 3], want[..., 3])
    hidden = got[..., 3] == 0
    assert (got[hidden][:, :3] == 0).all()


def test_refine_matte_of_a_large_image_with_guide_params():
    """One 2100x1500 case with guide_params (subsample 3), cropped decontamination inside."""
    alpha = _soft_disc(1500, 2100, 700, 1000, 500, 4)
    alpha[:, 300] = np.maximum(alpha[:, 300], 0.5)
    image, alpha = _compose(alpha, seed=11)
    radius, subsample = ref.guide_params(*alpha.shape)
    assert subsample == 3
    got = _np(
        port.refine_matte(torch.from_numpy(image), torch.from_numpy(alpha), 2, radius, subsample)
    )
    _assert_on_grid(got)
    _assert_matches_reference(got, image, alpha, 2, radius, subsample)
