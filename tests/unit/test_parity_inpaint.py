"""The torch object removal (simplypng.ops.inpaint) against the numpy reference.

Deterministic fake inpainters, each in a numpy and a torch form, stand in for the model. Exact:
the crop boxes, the sizes the model is called with, and every pixel outside the mask (bit-
identical to the input). Inside the mask the values go through Lanczos resampling (float32
matmuls here, Pillow's double sums there) and the fakes' own float sums: close, not equal.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from simplypng.ops import inpaint as port  # noqa: E402

from tests.reference_ops import inpaint as ref  # noqa: E402
from tests.reference_ops.parity import DEVICES  # noqa: E402

pytestmark = pytest.mark.torch

# Inside the mask: one 8-bit step. The fills differ only by float rounding (about 1e-6); a
# step is what SaveImage's 8-bit output can show.
INSIDE_ATOL = 1.0 / 255.0


class _Fake:
    """Base of the fakes: records the (height, width) of every call."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []


class MeanFillNumpy(_Fake):
    """Masked pixels take the mean colour of the unmasked ones (grey if none)."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.sizes.append(image.shape[:2])
        hole = mask > 0
        colour = image[~hole].mean(axis=0) if (~hole).any() else np.full(3, 0.5, np.float32)
        return np.where(hole[..., None], colour, image).astype(np.float32)


class MeanFillTorch(_Fake):
    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def __call__(self, image, mask):
        assert mask.dtype == torch.bool and image.dtype == torch.float32
        assert image.device.type == self.device and mask.device.type == self.device
        self.sizes.append(tuple(image.shape[:2]))
        keep = ~mask
        count = keep.sum()
        colour = (image * keep[..., None]).sum(dim=(0, 1)) / count.clamp(min=1)
        colour = torch.where(count > 0, colour, 0.5)
        return torch.where(mask[..., None], colour, image)


def _gradient_np(height: int, width: int) -> np.ndarray:
    x = np.arange(width, dtype=np.float32) / np.float32(width)
    y = np.arange(height, dtype=np.float32) / np.float32(height)
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.float32(0.25)), axis=-1)


class GradientNumpy(_Fake):
    """Masked pixels take a fixed gradient over the model input; values above 1 get clipped."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.sizes.append(image.shape[:2])
        fill = _gradient_np(*image.shape[:2]) * np.float32(2.0)
        return np.where(mask[..., None] > 0, fill, image)


class GradientTorch(_Fake):
    def __call__(self, image, mask):
        self.sizes.append(tuple(image.shape[:2]))
        fill = torch.from_numpy(_gradient_np(*image.shape[:2]) * np.float32(2.0))
        return torch.where(mask[..., None], fill.to(image.device), image)


class MirrorNumpy(_Fake):
    """Masked pixels take the pixel mirrored through the centre: fills read the padding."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.sizes.append(image.shape[:2])
        return np.where(mask[..., None] > 0, image[::-1, ::-1], image)


class MirrorTorch(_Fake):
    def __call__(self, image, mask):
        self.sizes.append(tuple(image.shape[:2]))
        return torch.where(mask[..., None], image.flip(0, 1), image)


def _photo(height: int, width: int, channels: int = 3, seed: int = 1) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels))
    return pixels.astype(np.float32) / 255.0


def _scene_mask(height: int = 280, width: int = 300) -> np.ndarray:
    """A large object, small blobs (two close enough to share a crop), border contact."""
    mask = np.zeros((height, width), bool)
    yy, xx = np.mgrid[0:height, 0:width]
    mask |= np.hypot(yy - 150, xx - 110) < 55  # large: shrunk for a 96 px model
    mask[20:26, 250:258] = True
    mask[30:33, 262:266] = True  # its context overlaps the blob above: one crop
    mask[270:280, 290:300] = True  # the bottom-right corner
    mask[0:4, 0:2] = True  # the top-left corner
    mask[200, 250] = True  # one pixel
    return mask


def _run(image, mask, fakes, device, **kwargs):
    fake_np, fake_torch = fakes
    want = ref.remove_objects(image, mask, fake_np, **kwargs)
    out = port.remove_objects(
        torch.from_numpy(image).to(device), torch.from_numpy(mask).to(device), fake_torch, **kwargs
    )
    assert out.device.type == device and out.dtype == torch.float32
    got = out.cpu().numpy()
    assert fake_torch.sizes == fake_np.sizes  # same crops, same model sizes, same order
    assert got.shape == want.shape
    outside = ~mask
    np.testing.assert_array_equal(got[outside], image[outside])  # bit-identical
    np.testing.assert_array_equal(want[outside], image[outside])
    return got, want


def _fakes(kind: str, device: str):
    if kind == "mean":
        return MeanFillNumpy(), MeanFillTorch(device)
    if kind == "gradient":
        return GradientNumpy(), GradientTorch()
    return MirrorNumpy(), MirrorTorch()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mean", "gradient", "mirror"])
@pytest.mark.parametrize("resolution", [96, 512])
def test_remove_objects_matches(device, kind, resolution):
    image, mask = _photo(280, 300), _scene_mask()
    fakes = _fakes(kind, device)
    got, want = _run(image, mask, fakes, device, resolution=resolution)
    np.testing.assert_allclose(got[mask], want[mask], rtol=0, atol=INSIDE_ATOL)
    assert not np.array_equal(got[mask], image[mask])  # the fill did happen
    if resolution == 96:
        assert any(max(size) == 96 for size in fakes[0].sizes)  # the shrunk path ran
    else:  # padded, never resampled: the fills are the model's own values
        assert all(h % 8 == 0 and w % 8 == 0 for h, w in fakes[0].sizes)
        if kind != "mean":  # no float sum in the fake either: exact
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 5), (1, 7), (6, 1), (2, 2), (1, 1), (9, 17)], ids=str)
def test_tiny_images_pad_like_numpy(device, shape):
    """Crops smaller than their padding: numpy keeps reflecting, torch's own pad cannot."""
    image = _photo(*shape, seed=4)
    mask = np.zeros(shape, bool)
    mask[shape[0] // 2, shape[1] // 2] = True
    got, want = _run(image, mask, _fakes("mirror", device), device)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", range(1, 11))
@pytest.mark.parametrize("pad", [0, 1, 5, 7, 12])
def test_reflect_pad_is_numpys(device, size, pad):
    image = _photo(size, size + 1, seed=size)
    want = np.pad(image, ((0, pad), (0, 7 - pad % 8), (0, 0)), mode="reflect")
    got = port.reflect_pad(torch.from_numpy(image).to(device), pad, 7 - pad % 8)
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@pytest.mark.parametrize(
    "mask_kind", ["scene", "speckled", "border", "empty", "full"], ids=lambda k: k
)
def test_crop_boxes_are_numpys(mask_kind):
    mask = np.zeros((280, 300), bool)
    if mask_kind == "scene":
        mask = _scene_mask()
    elif mask_kind == "speckled":
        mask[10:270:7, 10:290:7] = True  # more parts than MAX_CROPS: one bounded crop
    elif mask_kind == "border":
        mask[100:180, 0] = True
        mask[279, 250:] = True
    elif mask_kind == "full":
        mask[:] = True
    want = ref.crop_boxes(mask, ref.DEFAULT_CONTEXT)
    assert port.crop_boxes(torch.from_numpy(mask), ref.DEFAULT_CONTEXT) == want
    assert (len(want) == 1) == (mask_kind in ("speckled", "full"))


@pytest.mark.parametrize("device", DEVICES)
def test_alpha_and_extra_channels_are_untouched(device):
    image = _photo(80, 90, channels=4, seed=5)
    mask = np.zeros((80, 90), bool)
    mask[30:50, 20:60] = True
    got, want = _run(image, mask, _fakes("gradient", device), device)
    np.testing.assert_array_equal(got[..., 3], image[..., 3])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_mask_does_not_call_the_model(device):
    image = _photo(40, 50)
    fakes = _fakes("mean", device)
    got, _ = _run(image, np.zeros((40, 50), bool), fakes, device)
    assert fakes[1].sizes == [] and np.array_equal(got, image)


@pytest.mark.parametrize("device", DEVICES)
def test_a_wrong_shape_from_the_model_is_an_error(device):
    image = torch.from_numpy(_photo(40, 40)).to(device)
    mask = torch.zeros((40, 40), dtype=torch.bool, device=device)
    mask[10:20, 10:20] = True
    with pytest.raises(ValueError, match="inpainter returned shape"):
        port.remove_objects(image, mask, lambda picture, hole: picture[:8])
