"""The torch white-background port (simplypng.ops.ecomm) against the numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")
pytest.importorskip("scipy", reason="the numpy reference needs scipy (the nodes extra)")

from simplypng.ops import ecomm as port  # noqa: E402
from simplypng.ops.errors import NoSubjectError  # noqa: E402

from tests.reference_ops import ecomm as ref  # noqa: E402
from tests.reference_ops.alpha import alpha_bbox  # noqa: E402
from tests.reference_ops.parity import DEVICES, GRID_STEP  # noqa: E402

pytestmark = pytest.mark.torch

# Share of pixels allowed to take that neighbouring step (seen: 0 to 2 pixels per canvas).
MAX_STEPPED = 1e-3

CANVASES = [(300, 200), (150, 260)]


def _cutout(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGBA: noise colours under a soft off-centre ellipse, transparent (colour kept) around."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((xx - 0.45 * width) / (0.3 * width), (yy - 0.55 * height) / (0.35 * height))
    alpha = np.clip((1.0 - r) * min(height, width) / 8, 0, 1).astype(np.float32)
    return np.concatenate([rng.random((height, width, 3), dtype=np.float32), alpha[..., None]], -1)


def _box(rgba: np.ndarray) -> tuple[int, int, int, int]:
    box = alpha_bbox(rgba[..., 3])
    assert box is not None
    return box


def _untouched(rgba: np.ndarray, fill: float, width: int, height: int, shadow: bool) -> np.ndarray:
    """Canvas pixels neither the placed subject nor its shadow window can reach."""
    x, y, w, h = ref.layout_box(_box(rgba), fill, width, height)
    margin = 0
    if shadow:  # as ops/ecomm.py sizes the shadow window
        blur = max(2.0, ref.SHADOW_BLUR_OF_WIDTH * w)
        margin = math.ceil(2.0 * blur) + max(1, round(ref.SHADOW_DROP_OF_HEIGHT * h)) + 1
    mask = np.ones((height, width), bool)
    mask[max(0, y - margin) : y + h + margin, max(0, x - margin) : x + w + margin] = False
    return mask


def _compare(rgba: np.ndarray, fill: float, canvas: tuple[int, int], shadow: bool, device: str):
    width, height = canvas
    want = ref.white_background(rgba, fill, width, height, shadow)
    tensor = torch.from_numpy(rgba).to(device)
    out = port.white_background(tensor, fill, width, height, shadow)
    assert out.device.type == device and out.dtype == torch.float32
    got = out.cpu().numpy()
    assert got.shape == want.shape == (height, width, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=GRID_STEP)
    assert (got != want).mean() <= MAX_STEPPED
    np.testing.assert_array_equal(np.round(got * 255) / 255, got)  # on the 8-bit grid
    border = _untouched(rgba, fill, width, height, shadow)
    assert (want[border] == 1.0).all()  # the mask really is outside everything drawn
    assert (got[border] == 1.0).all()  # exactly white, not 0.99999
    assert (got < 0.5).any()  # the subject is really there


def test_layout_box_matches():
    boxes = [(0, 0, 10, 10), (3, 5, 50, 13), (10, 2, 11, 300), (7, 7, 1031, 517)]
    for box in boxes:
        for fill in (0.05, 0.3, 0.85, 1.0):
            for canvas in [(1000, 1000), (300, 200), (150, 260), (1, 1), (2000, 7)]:
                assert port.layout_box(box, fill, *canvas) == ref.layout_box(box, fill, *canvas)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("canvas", CANVASES, ids=str)
@pytest.mark.parametrize("fill", [0.3, 0.85, 1.0])
@pytest.mark.parametrize("shadow", [False, True])
def test_white_background_matches(device, canvas, fill, shadow):
    _compare(_cutout(131, 97), fill, canvas, shadow, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shadow", [False, True])
def test_downscaled_subject_matches(device, shadow):
    _compare(_cutout(300, 257, seed=1), 0.85, (160, 120), shadow, device)


@pytest.mark.parametrize("device", DEVICES)
def test_larger_canvas_with_a_wide_shadow_matches(device):
    _compare(_cutout(280, 300, seed=2), 0.85, (1000, 800), True, device)


@pytest.mark.parametrize("device", DEVICES)
def test_no_subject_is_an_error(device):
    empty = torch.zeros((20, 30, 4), device=device)
    with pytest.raises(NoSubjectError):
        port.white_background(empty, 0.85, 100, 100, True)
