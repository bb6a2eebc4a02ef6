"""Exact Euclidean distances in torch (simplypng.ops.distance, regions.dilate) against
scipy.ndimage.distance_transform_edt and the numpy reference tests/reference_ops/regions.dilate.

Everything here is integer-exact: no tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from scipy import ndimage  # noqa: E402
from simplypng.ops import distance  # noqa: E402
from simplypng.ops import regions as port  # noqa: E402
from torch import Tensor  # noqa: E402

from tests.reference_ops import regions as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402

pytestmark = pytest.mark.torch


def _masks() -> dict[str, np.ndarray]:
    """Random densities, a disc, thin strands, border-touching shapes, odd and 1-px sizes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:97, 0:131]
    strands = np.zeros((120, 90), bool)
    strands[:, 30] = True
    strands[60, :] = True
    strands[np.arange(90), np.arange(90)] = True
    border = np.zeros((64, 50), bool)
    border[0, :] = True
    border[:, -1] = True
    corner = np.zeros((70, 70), bool)
    corner[0, 0] = True
    center = np.zeros((41, 77), bool)
    center[20, 38] = True
    return {
        "sparse": rng.random((97, 131)) > 0.995,
        "noise": rng.random((97, 131)) > 0.5,
        "dense": rng.random((97, 131)) > 0.05,
        "disc": np.hypot(yy - 40, xx - 70) < 25,
        "strands": strands,
        "border": border,
        "corner": corner,
        "center": center,
        "empty": np.zeros((33, 47), bool),
        "full": np.ones((33, 47), bool),
        "row": rng.random((1, 80)) > 0.9,
        "column": rng.random((80, 1)) > 0.9,
        "pixel": np.ones((1, 1), bool),
    }


MASKS = _masks()


def _t(mask: np.ndarray, device: str) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask)).to(device)


def _scipy_sq_distance(target: np.ndarray) -> np.ndarray:
    """Exact integer squared distance to the nearest True pixel (from scipy's feature map)."""
    _, (iy, ix) = ndimage.distance_transform_edt(~target, return_indices=True)
    yy, xx = np.indices(target.shape)
    return (iy - yy) ** 2 + (ix - xx) ** 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("cap", [1, 2, 3, 11, 20])
def test_bounded_sq_distance_is_exact_up_to_the_cap(device, name, cap):
    target = MASKS[name]
    got = distance.bounded_sq_distance(_t(target, device), cap).cpu().numpy().astype(np.int64)
    if not target.any():  # scipy has no answer; ours must report "beyond the cap"
        assert (got > cap * cap).all()
        return
    want = _scipy_sq_distance(target)
    near = want <= cap * cap
    np.testing.assert_array_equal(got[near], want[near])
    assert (got[~near] > cap * cap).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("pixels", [0, 1, 2, 3, 5, 17, 40, 128])
def test_dilate_matches_the_reference_exactly(device, name, pixels):
    mask = MASKS[name]
    got = port.dilate(_t(mask, device), pixels)
    assert got.dtype == torch.bool and got.device.type == device
    np.testing.assert_array_equal(got.cpu().numpy(), ref.dilate(mask, pixels))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pixels", [1, 7, 128])
def test_uncropped_dilation_matches_the_reference_exactly(device, pixels):
    """distance.dilate on the whole image (regions.dilate crops first)."""
    mask = MASKS["noise"] & MASKS["disc"]
    got = distance.dilate(_t(mask, device), pixels).cpu().numpy()
    np.testing.assert_array_equal(got, ref.dilate(mask, pixels))


@pytest.mark.parametrize("device", DEVICES)
def test_dilation_by_128_of_a_300px_mask(device):
    """The widest radius the node allows, on a mask whose grown box is cropped by the image."""
    rng = np.random.default_rng(1)
    mask = np.zeros((300, 257), bool)
    mask[rng.integers(0, 300, 6), rng.integers(0, 257, 6)] = True
    mask[140:160, 10:200] = True
    got = port.dilate(_t(mask, device), 128).cpu().numpy()
    np.testing.assert_array_equal(got, ref.dilate(mask, 128))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(set(MASKS) - {"empty"}))
def test_nearest_true_is_at_the_exact_minimal_distance(device, name):
    target = MASKS[name]
    rows, cols = distance.nearest_true(_t(target, device))
    rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
    assert target[rows, cols].all()
    yy, xx = np.indices(target.shape)
    np.testing.assert_array_equal((rows - yy) ** 2 + (cols - xx) ** 2, _scipy_sq_distance(target))
    # True pixels are their own nearest.
    np.testing.assert_array_equal(rows[target], yy[target])
    np.testing.assert_array_equal(cols[target], xx[target])
