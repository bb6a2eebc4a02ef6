"""The torch shadow port (simplypng.ops.shadow) against the scipy numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")
pytest.importorskip("scipy", reason="the numpy reference needs scipy (the nodes extra)")

from simplypng.ops import shadow as port  # noqa: E402
from torch import Tensor  # noqa: E402

from tests.reference_ops import shadow as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES, GRID_STEP  # noqa: E402

pytestmark = pytest.mark.torch

# Coverage is float: float32 matmuls and interpolation against scipy's double sums
# (seen: under 1e-6).
FLOAT_ATOL = 1e-5

BLURS = [0.0, 1.0, 12.0, 50.0]
# Zero, positive, negative, mixed, partly and wholly beyond the 131x97 plane.
OFFSETS = [(0, 0), (5, 3), (-20, -7), (12, -30), (130, 96), (-131, 0), (0, 97), (300, -200)]


def _alpha(height: int = 97, width: int = 131) -> np.ndarray:
    """A soft disc plus faint specks (below the contact shadow's 0.5 box threshold)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = np.clip(0.3 * min(height, width) - np.hypot(yy - 0.5 * height, xx - 0.45 * width), 0, 1)
    specks = 0.3 * (np.random.default_rng(0).random((height, width)) > 0.97)
    return np.maximum(disc, specks).astype(np.float32)


def _on(array: np.ndarray, device: str) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _back(tensor: Tensor, device: str) -> np.ndarray:
    assert tensor.device.type == device and tensor.dtype == torch.float32
    return tensor.cpu().numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("offset", OFFSETS, ids=str)
def test_shift_is_exact(device, offset):
    plane = np.random.default_rng(1).random((97, 131), dtype=np.float32)
    got = _back(port.shift(_on(plane, device), *offset), device)
    np.testing.assert_array_equal(got, ref.shift(plane, *offset))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("offset", OFFSETS, ids=str)
@pytest.mark.parametrize("blur", BLURS)
def test_drop_shadow_matches(device, offset, blur):
    alpha = _alpha()
    got = _back(port.drop_shadow(_on(alpha, device), *offset, blur), device)
    want = ref.drop_shadow(alpha, *offset, blur)
    if blur == 0:
        np.testing.assert_array_equal(got, want)  # the hard shadow is a shift and a clip
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("offset", OFFSETS, ids=str)
@pytest.mark.parametrize("blur", BLURS)
def test_contact_shadow_matches(device, offset, blur):
    alpha = _alpha()
    got = _back(port.contact_shadow(_on(alpha, device), *offset, blur), device)
    want = ref.contact_shadow(alpha, *offset, blur)
    np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("squash", [0.12, 0.5, 1.0, 1.7])
def test_contact_shadow_squash_factors_match(device, squash):
    alpha = _alpha(61, 40)
    got = _back(port.contact_shadow(_on(alpha, device), 3, 2, 4.0, squash), device)
    np.testing.assert_allclose(
        got, ref.contact_shadow(alpha, 3, 2, 4.0, squash), rtol=0, atol=FLOAT_ATOL
    )


@pytest.mark.parametrize("device", DEVICES)
def test_samples_outside_the_input_are_zero_not_interpolated(device):
    """scipy's order-1 "constant" mode: a row sampled at c < 0 is cval, even for -1 < c < 0."""
    alpha = np.ones((10, 3), np.float32)
    # squash 1: output row y samples input row y - 4.5, so row 4 samples -0.5 and row 5 0.5.
    want = ref.contact_shadow(alpha, 0, 0, 0.0, squash=1.0)
    got = _back(port.contact_shadow(_on(alpha, device), 0, 0, 0.0, squash=1.0), device)
    np.testing.assert_array_equal(want[:5], 0.0)
    np.testing.assert_array_equal(want[5:], 1.0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_placed_strip_equals_the_shadow_of_the_full_canvas(device):
    alpha = _alpha(40, 30)
    canvas = np.zeros((90, 70), np.float32)
    canvas[25:65, 33:63] = alpha
    full = port.contact_shadow(_on(canvas, device), -4, 6, 10.0)
    strip = port.contact_shadow_strip(_on(alpha, device), -4, 6, 10.0, canvas=(90, 70), at=(33, 25))
    assert strip is not None
    first, coverage = strip
    placed = torch.zeros_like(full)
    placed[first : first + coverage.shape[0]] = coverage
    np.testing.assert_allclose(_back(placed, device), _back(full, device), rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        _back(full, device), ref.contact_shadow(canvas, -4, 6, 10.0), rtol=0, atol=FLOAT_ATOL
    )
    assert float(full.max()) > 0.1  # a real shadow, not two empty planes


@pytest.mark.parametrize("device", DEVICES)
def test_no_subject_gives_no_contact_shadow(device):
    faint = np.full((20, 30), 0.4, np.float32)  # nothing reaches the 0.5 box threshold
    got = _back(port.contact_shadow(_on(faint, device), 1, 1, 3.0), device)
    np.testing.assert_array_equal(got, ref.contact_shadow(faint, 1, 1, 3.0))
    assert port.contact_shadow_strip(_on(faint, device), 1, 1, 3.0) is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["none", "soft", "hard", "drop"])
@pytest.mark.parametrize("blur", [0.0, 12.0])
def test_add_shadow_matches(device, mode, blur):
    rng = np.random.default_rng(2)
    rgba = np.concatenate([rng.random((97, 131, 3), dtype=np.float32), _alpha()[..., None]], -1)
    got = _back(port.add_shadow(_on(rgba, device), mode, 9, -4, 0.6, blur), device)
    want = ref.add_shadow(rgba, mode, 9, -4, 0.6, blur)
    assert got.shape == want.shape
    if mode == "none":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=GRID_STEP)
        np.testing.assert_array_equal(np.round(got * 255) / 255, got)  # on the 8-bit grid
    assert (got[..., 3] > want[..., 3].min()).any()  # not trivially empty


@pytest.mark.parametrize("device", DEVICES)
def test_zero_opacity_is_a_copy(device):
    rgba = np.concatenate([np.full((8, 9, 3), 0.3, np.float32), _alpha(8, 9)[..., None]], -1)
    source = _on(rgba, device)
    got = port.add_shadow(source, "drop", 2, 2, 0.0, 4.0)
    np.testing.assert_array_equal(_back(got, device), ref.add_shadow(rgba, "drop", 2, 2, 0.0, 4.0))
    assert got.data_ptr() != source.data_ptr()


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown shadow mode"):
        port.shadow_coverage(torch.zeros(4, 4), "glow", 0, 0, 1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_wide_blur_on_a_larger_plane_matches(device):
    alpha = _alpha(300, 260)
    for fn in (ref.drop_shadow, ref.contact_shadow):
        want = fn(alpha, 17, -11, 50.0)
        got = _back(getattr(port, fn.__name__)(_on(alpha, device), 17, -11, 50.0), device)
        np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)
