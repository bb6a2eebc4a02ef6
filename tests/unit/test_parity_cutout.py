"""The torch cutout port (simplypng.ops.cutout) against the scipy-backed numpy reference.

Speck removal decides, per pixel, keep or drop: those decisions are exact, so results must be
equal, including pixels equidistant from a kept and a dropped part (the port follows scipy's
tie rule). Cutout only copies pixels onto a canvas: exact too.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from scipy import ndimage  # noqa: E402
from simplypng.ops import cutout as port  # noqa: E402
from simplypng.ops.errors import NoSubjectError  # noqa: E402

from tests.reference_ops import cutout as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402

pytestmark = pytest.mark.torch


def _scene(height: int = 180, width: int = 300) -> np.ndarray:
    """Alpha with blobs of many sizes, specks, a diagonal-only chain, haze and border contact."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # A soft-edged main subject cut by the left border, and a medium blob.
    alpha = np.clip((60.0 - np.hypot(yy - 90, xx - 20)) / 6.0 + 0.5, 0.0, 1.0)
    alpha = np.maximum(alpha, np.clip((18.0 - np.hypot(yy - 40, xx - 150)) / 4.0 + 0.5, 0, 1))
    alpha[170:180, 280:300] = 1.0  # a 200 px bar in the bottom-right corner
    for y, x, size in [(10, 250, 1), (20, 200, 2), (150, 150, 3), (100, 250, 4), (5, 5, 2)]:
        alpha[y : y + size, x : x + size] = 1.0  # specks, the last one in a corner
    for i in range(12):  # 12 pixels touching only diagonally: one 8-connected part
        alpha[120 + i, 200 + i] = 1.0
    alpha[60:66, 230:236] = 0.45  # a faint patch: haze with no solid pixel inside
    rng = np.random.default_rng(7)
    haze = rng.random((height, width), dtype=np.float32) * 0.3
    return np.where(alpha < 0.5, np.maximum(alpha, haze * (rng.random(alpha.shape) < 0.4)), alpha)


def _rgba(alpha: np.ndarray, seed: int = 3) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (*alpha.shape, 3)).astype(np.float32)
    return np.concatenate([rgb / 255.0, alpha[..., None].astype(np.float32)], axis=-1)


def _port_specks(alpha: np.ndarray, min_region: int, device: str) -> np.ndarray:
    out = port.remove_specks(torch.from_numpy(alpha).to(device), min_region)
    assert out.device.type == device and out.dtype == torch.float32
    return out.cpu().numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("min_region", [0, 5, 13, 250, 10**6])
def test_remove_specks_matches_scipy(device, min_region):
    alpha = _scene()
    want = ref.remove_specks(alpha, min_region)
    np.testing.assert_array_equal(_port_specks(alpha, min_region, device), want)


@pytest.mark.parametrize("device", DEVICES)
def test_the_scene_exercises_what_it_claims(device):
    """Guards the scene: specks dropped with their haze, the diagonal chain kept whole."""
    alpha = _scene()
    got = _port_specks(alpha, 12, device)
    assert (np.diagonal(got[120:132, 200:212]) == 1).all()  # the 12 px chain, at min_region 12
    assert got[10, 250] == 0 and got[20:22, 200:202].sum() == 0  # 1 px and 4 px specks gone
    assert (got[150:153, 150:153] == 0).all()
    nearest_speck = np.zeros_like(alpha, dtype=bool)
    nearest_speck[148:156, 148:156] = True
    assert alpha[nearest_speck & (alpha < 0.5)].sum() > 0  # haze there, removed with it
    assert got[nearest_speck].sum() == 0
    assert (got[60:120, :40] == alpha[60:120, :40]).all()  # the subject on the border stays
    assert got[5:7, 5:7].sum() == 0  # the speck in the top-left corner goes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(8))
def test_ties_follow_scipy(device, seed, monkeypatch):
    """Sparse random solid pixels on a small grid: many pixels equidistant from two parts.

    Small segments force the envelope's merge stage on a small image.
    """
    monkeypatch.setattr(port, "_SEGMENT_SITES", 1 + seed % 5)
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 48, 2)
    solid = rng.random((height, width)) < rng.uniform(0.03, 0.4)
    alpha = np.where(solid, 1.0, rng.random((height, width)) * 0.45).astype(np.float32)
    min_region = int(rng.integers(2, 6))
    want = ref.remove_specks(alpha, min_region)
    np.testing.assert_array_equal(_port_specks(alpha, min_region, device), want)
    # The first cases must contain exact ties (a non-solid pixel as near to a kept part as to
    # a dropped one), or they would test nothing about them.
    dropped = solid & (want == 0)
    kept = solid & ~dropped
    if seed < 3:
        to_kept = ndimage.distance_transform_edt(~kept)
        to_dropped = ndimage.distance_transform_edt(~dropped)
        assert ((to_kept == to_dropped) & ~solid).any()


@pytest.mark.parametrize("device", DEVICES)
def test_tall_and_wide_inputs(device):
    alpha = _scene(180, 300)
    for image in (alpha.T.copy(), alpha[:, :7].copy(), alpha[:1].copy()):
        want = ref.remove_specks(image, 10)
        np.testing.assert_array_equal(_port_specks(image, 10, device), want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("unit", ["px", "percent"])
@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("min_size", [0, 50, 400])
@pytest.mark.parametrize("min_region", [0, 64])
def test_cutout_matches(device, unit, square, min_size, min_region):
    rgba = _rgba(_scene())
    padding = 7 if unit == "px" else 12.5
    want = ref.cutout(rgba, padding, unit, square, min_size, min_region)
    got = port.cutout(
        torch.from_numpy(rgba).to(device), padding, unit, square, min_size, min_region
    )
    assert got.device.type == device and got.dtype == torch.float32
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_past_the_borders_matches(device):
    rgba = _rgba(_scene())
    rgba[..., 3] = 0.0
    rgba[0:30, 270:300, 3] = 1.0  # a subject in the top-right corner, padded past two borders
    want = ref.cutout(rgba, 40, "px", True, 0, 0)
    got = port.cutout(torch.from_numpy(rgba).to(device), 40, "px", True, 0, 0)
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_alpha_is_no_subject(device):
    rgba = _rgba(np.zeros((20, 30), np.float32))
    rgba[5, 5, 3] = 0.5 / 255.0  # below the visible threshold
    with pytest.raises(NoSubjectError):
        ref.cutout(rgba, 4, "px", False, 0, 64)
    with pytest.raises(NoSubjectError, match="no subject"):
        port.cutout(torch.from_numpy(rgba).to(device), 4, "px", False, 0, 64)
