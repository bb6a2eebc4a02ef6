"""The torch resize port (simplypng.ops.resize) against the Pillow-backed numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from simplypng.ops import resize as port  # noqa: E402

from tests.reference_ops import resize as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES, GRID_STEP  # noqa: E402

pytestmark = pytest.mark.torch

# Float results: float32 matmuls against Pillow's double sums (seen: under 1e-6).
FLOAT_ATOL = 1e-5

METHODS = ["lanczos", "bicubic", "bilinear", "box", "nearest"]
# (width, height) targets for a 131x97 input: both axes changed each way, 4x and about 1/3,
# one axis unchanged (Pillow skips that pass), and degenerate sizes.
SIZES = [(200, 37), (37, 200), (524, 388), (44, 32), (131, 300), (300, 97), (1, 1), (7, 2)]


def _noise(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _soft_disc(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = 0.35 * min(height, width)
    return np.clip(radius - np.hypot(yy - 0.45 * height, xx - 0.55 * width), 0, 1)


def _run(array: np.ndarray, size: tuple[int, int], method: str, device: str) -> np.ndarray:
    out = port.resize(torch.from_numpy(array).to(device), size, method)  # type: ignore[arg-type]
    assert out.device.type == device and out.dtype == torch.float32
    return out.cpu().numpy()


def _assert_matches(got: np.ndarray, want: np.ndarray, method: str) -> None:
    assert got.shape == want.shape
    if method == "nearest":
        np.testing.assert_array_equal(got, want)  # a pure copy of source pixels
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_rgb_noise_matches_pillow(device, size, method):
    image = _noise(97, 131, 3)
    _assert_matches(_run(image, size, method, device), ref.resize(image, size, method), method)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(200, 37), (524, 388), (44, 32), (131, 20)], ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_planes_and_four_channels_match_pillow(device, size, method):
    disc = _soft_disc(97, 131)
    _assert_matches(_run(disc, size, method, device), ref.resize(disc, size, method), method)
    rgba = np.concatenate([_noise(97, 131, 3, seed=1), disc[..., None]], axis=-1)
    _assert_matches(_run(rgba, size, method, device), ref.resize(rgba, size, method), method)


@pytest.mark.parametrize("device", DEVICES)
def test_integer_factors_match_pillow(device):
    image = _noise(60, 48, 2, seed=2)
    for size in [(192, 240), (16, 20), (24, 30)]:  # 4x, 1/3, 1/2
        for method in METHODS:
            got = _run(image, size, method, device)
            _assert_matches(got, ref.resize(image, size, method), method)


@pytest.mark.parametrize("device", DEVICES)
def test_same_size_is_a_float32_copy(device):
    image = torch.from_numpy(_noise(9, 11, 3).astype(np.float64)).to(device)
    out = port.resize(image, (11, 9), "lanczos")
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.cpu().numpy(), image.cpu().numpy().astype(np.float32))
    out += 1.0
    assert float(image.max()) < 1.0  # the input is untouched


@pytest.mark.parametrize("device", DEVICES)
def test_the_input_is_kept_unless_consumed(device):
    image = _noise(97, 131, 4, seed=4)
    source = torch.from_numpy(image.copy()).to(device)
    kept = port.resize(source, (60, 50), "lanczos")
    np.testing.assert_array_equal(source.cpu().numpy(), image)
    consumed = port.resize(source, (60, 50), "lanczos", consume=True)
    np.testing.assert_array_equal(consumed.cpu().numpy(), kept.cpu().numpy())
    want = ref.resize(image, (60, 50), "lanczos")
    np.testing.assert_allclose(kept.cpu().numpy(), want, rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_a_strided_view_resizes_like_a_copy(device):
    image = _noise(97, 131, 4, seed=5)
    view = torch.from_numpy(image).to(device)[10:80, 7:120, 1:]  # not contiguous
    for size, method in [((90, 50), "lanczos"), ((113, 30), "bicubic"), ((40, 70), "nearest")]:
        want = ref.resize(np.ascontiguousarray(image[10:80, 7:120, 1:]), size, method)
        got = port.resize(view, size, method).cpu().numpy()
        _assert_matches(got, want, method)


def test_an_empty_target_is_rejected():
    with pytest.raises(ValueError, match="at least 1x1"):
        port.resize(torch.zeros(4, 4), (0, 3))


def test_long_edge_size_and_needs_model_match():
    for width, height in [(300, 200), (200, 300), (4000, 10), (5000, 1), (2048, 2048), (7, 3)]:
        for target in (256, 1024, 2048):
            assert port.long_edge_size(width, height, target) == ref.long_edge_size(
                width, height, target
            )
            assert port.needs_model(width, height, target) == ref.needs_model(width, height, target)


def _edge_cutout(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise colours, alpha 0 left of a soft vertical edge: each hidden pixel has one nearest
    visible pixel (same row), so the hidden-colour fill cannot tie-break differently."""
    rgb = _noise(height, width, 3, seed=3)
    ramp = np.clip((np.arange(width, dtype=np.float32) - 0.4 * width) / 6.0, 0, 1)
    return rgb, np.broadcast_to(ramp, (height, width)).copy()


@pytest.mark.parametrize("device", DEVICES)
def test_resize_long_edge_matches(device):
    rgb, alpha = _edge_cutout(60, 90)
    model_rgb = np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)  # stands in for a 4x model
    cases = [(rgb, None, 200), (rgb, alpha, 200), (rgb, alpha, 50), (model_rgb, alpha, 300)]
    for colour, plane, target in cases:
        want_rgb, want_alpha = ref.resize_long_edge(colour, plane, target)
        got_rgb, got_alpha = port.resize_long_edge(
            torch.from_numpy(colour).to(device),
            None if plane is None else torch.from_numpy(plane).to(device),
            target,
        )
        assert got_rgb.shape == want_rgb.shape
        np.testing.assert_allclose(got_rgb.cpu().numpy(), want_rgb, rtol=0, atol=GRID_STEP)
        if want_alpha is None:
            assert got_alpha is None
        else:
            assert got_alpha is not None and got_alpha.shape == want_alpha.shape
            np.testing.assert_allclose(got_alpha.cpu().numpy(), want_alpha, rtol=0, atol=GRID_STEP)
