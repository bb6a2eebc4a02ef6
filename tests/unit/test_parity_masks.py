"""The torch mask builders (simplypng.ops.masks) against the numpy reference (ops.regions).

Masks are exact. The one inexact step is a bilinear resize of a mask image's alpha (float32
matmuls here, Pillow's double sums there, see test_parity_resize): a pixel whose luma * alpha
lies within that resize tolerance of the 0.5 threshold may fall either side, so those pixels,
and only those, are left out of the comparison (and must be rare).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from simplypng.ops import masks as port  # noqa: E402
from simplypng.ops.errors import InvalidRegionsError  # noqa: E402

from tests.reference_ops import regions as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402
from tests.reference_ops.resize import resize as ref_resize  # noqa: E402

pytestmark = pytest.mark.torch

# Float tolerance of the bilinear resize port (as in test_parity_resize).
RESIZE_ATOL = 1e-5

REGIONS = [
    ([{"kind": "rect", "x": 2.5, "y": 1, "w": 30, "h": 20}], "px"),
    ([{"x": 0.1, "y": 0.5, "w": 0.33, "h": 0.25}], "normalized"),
    ([{"kind": "polygon", "points": [[5, 5], [90, 12], [40, 70]]}], "px"),
    (
        [
            {"kind": "rect", "x": -10, "y": 60, "w": 25, "h": 100},
            {"kind": "polygon", "points": [[0.5, 0.0], [1.5, 0.5], [0.6, 0.9]]},
        ],
        "normalized",
    ),
]


def _grid(*shape: int, seed: int) -> np.ndarray:
    """Values on the 8-bit grid, as LoadImage gives them."""
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32) / 255.0


def _port(image: np.ndarray, width: int, height: int, alpha: np.ndarray | None, device: str):
    out = port.mask_from_image(
        torch.from_numpy(image).to(device),
        width,
        height,
        None if alpha is None else torch.from_numpy(alpha).to(device),
    )
    assert out.device.type == device and out.dtype == torch.bool
    return out.cpu().numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("regions", "units"), REGIONS)
def test_regions_mask_is_the_rasterised_mask_on_the_device(device, regions, units):
    want = ref.rasterize_regions(regions, units, 97, 81)
    got = port.regions_mask(regions, units, 97, 81, device)
    assert got.device.type == device and got.dtype == torch.bool
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.parametrize("device", DEVICES)
def test_regions_mask_errors_are_the_references(device):
    with pytest.raises(InvalidRegionsError, match="do not cover any pixel"):
        port.regions_mask([{"kind": "rect", "x": 200, "y": 0, "w": 5, "h": 5}], "px", 9, 9, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_same_size_mask_images_are_exact(device, channels):
    shape = (83, 121) if channels is None else (83, 121, channels)
    image = _grid(*shape, seed=channels or 0)
    want = ref.mask_from_image(image, 121, 83)
    assert 0 < want.sum() < want.size  # both sides of the threshold
    np.testing.assert_array_equal(_port(image, 121, 83, None, device), want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(240, 170), (60, 41), (121, 30), (1, 1)], ids=str)
def test_resized_mask_images_are_exact(device, size):
    """Nearest-neighbour resizing of the luma copies pixels: exact."""
    image = _grid(83, 121, 4, seed=1)
    width, height = size
    want = ref.mask_from_image(image, width, height)
    np.testing.assert_array_equal(_port(image, width, height, None, device), want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("alpha_shape", [(83, 121), (40, 61), (200, 300)], ids=str)
def test_separate_alpha_matches(device, alpha_shape):
    image = _grid(83, 121, 3, seed=2)
    alpha = _grid(*alpha_shape, seed=3)
    want = ref.mask_from_image(image, 150, 100, alpha)
    got = _port(image, 150, 100, alpha, device)
    # The reference's luma * alpha before its nearest resize, to find threshold-close pixels.
    resized = alpha
    if alpha.shape != image.shape[:2]:
        resized = np.clip(ref_resize(alpha, (121, 83), "bilinear"), 0.0, 1.0)
    value = ref_resize(image.mean(axis=-1) * resized, (150, 100), "nearest")
    near = np.abs(value - 0.5) <= RESIZE_ATOL
    assert near.sum() <= 3
    np.testing.assert_array_equal(got[~near], want[~near])
    if alpha.shape == image.shape[:2]:  # no alpha resize: exact everywhere
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_transparent_white_removes_nothing(device):
    image = np.ones((30, 40, 4), np.float32)
    image[:, :20, 3] = 0.0
    want = ref.mask_from_image(image, 40, 30)
    got = _port(image, 40, 30, None, device)
    np.testing.assert_array_equal(got, want)
    assert got[:, 20:].all() and not got[:, :20].any()


@pytest.mark.parametrize("device", DEVICES)
def test_luma_exactly_at_the_threshold_removes(device):
    image = np.full((6, 8, 3), 0.5, np.float32)
    image[:, :4] = np.nextafter(np.float32(0.5), np.float32(0.0))
    want = ref.mask_from_image(image, 8, 6)
    np.testing.assert_array_equal(_port(image, 8, 6, None, device), want)
    assert want[:, 4:].all() and not want[:, :4].any()
