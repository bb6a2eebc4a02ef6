"""The ComfyUI node wrappers: declared types, tensor conversion, batches and broadcasting.

Model-backed nodes get stubs here: `nodes._get_segmenter` / `nodes._get_inpainter` are
monkeypatched (ONLY in this file) to simple stand-ins, because these tests check the wrappers,
not the models (the models have their own tests).
"""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

COMFY_NODES = Path(__file__).resolve().parents[2] / "comfy_nodes"
sys.path.insert(0, str(COMFY_NODES))
import simplypng  # noqa: E402
from simplypng import nodes, raw_nodes  # noqa: E402

WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING"}
LINK_TYPES = {"IMAGE", "MASK", "SIMPLYPNG_PIXELS"}


class StubSegmenter:
    """Stand-in for a segmenter: the subject is wherever the red channel is above 0.5."""

    spec = SimpleNamespace(size=320)  # the resolution the model would see

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.names: list[str] = []

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.float32 and images.shape[-1] == 3
        self.batches.append(tuple(images.shape))
        return (images[..., 0] > 0.5).to(torch.float32)


class StubInpainter:
    """Stand-in for LaMa: paints the masked pixels mid-grey."""

    def __init__(self) -> None:
        self.calls = 0

    def inpaint_tensor(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert mask.dtype == torch.bool and mask.shape == image.shape[:2]
        self.calls += 1
        return torch.where(mask[..., None], torch.tensor(0.5), image).to(torch.float32)


@pytest.fixture
def segmenter(monkeypatch) -> StubSegmenter:
    stub = StubSegmenter()

    def get(name: str) -> StubSegmenter:
        stub.names.append(name)
        return stub

    monkeypatch.setattr(nodes, "_get_segmenter", get)
    return stub


@pytest.fixture
def inpainter(monkeypatch) -> StubInpainter:
    stub = StubInpainter()
    monkeypatch.setattr(nodes, "_get_inpainter", lambda: stub)
    return stub


def _subjects(batch: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """Images with a red square (different size per item) on a blue background."""
    images = torch.zeros(batch, height, width, 3)
    images[..., 2] = 0.8
    for i in range(batch):
        images[i, 10 : 20 + 4 * i, 12 : 30 + 4 * i] = torch.tensor([0.9, 0.1, 0.1])
    return images


# --- declarations -----------------------------------------------------------------------------


def test_every_node_is_exported_with_a_prefixed_name_and_a_display_name():
    assert simplypng.NODE_CLASS_MAPPINGS == {
        **nodes.NODE_CLASS_MAPPINGS,
        **raw_nodes.NODE_CLASS_MAPPINGS,
    }
    assert len(simplypng.NODE_CLASS_MAPPINGS) == 14
    for name, cls in simplypng.NODE_CLASS_MAPPINGS.items():
        assert name.startswith("SimplyPNG") and cls.__name__ == name
        assert simplypng.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("SimplyPNG ")
    assert set(simplypng.NODE_DISPLAY_NAME_MAPPINGS) == set(simplypng.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("name", sorted(simplypng.NODE_CLASS_MAPPINGS))
def test_declared_inputs_and_outputs_are_valid_comfyui_specs(name):
    cls = simplypng.NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"} and spec["required"]
    inputs = {**spec["required"], **spec.get("optional", {})}
    for input_name, declaration in inputs.items():
        kind, options = declaration[0], (declaration[1] if len(declaration) > 1 else {})
        if isinstance(kind, list):
            assert kind and options.get("default", kind[0]) in kind, input_name
        elif kind in WIDGET_TYPES:
            default = options["default"]
            if kind in {"INT", "FLOAT"}:
                assert options["min"] <= default <= options["max"], input_name
                assert isinstance(default, int if kind == "INT" else float), input_name
        else:
            assert kind in LINK_TYPES, input_name
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert all(t in LINK_TYPES | WIDGET_TYPES for t in cls.RETURN_TYPES)
    assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    run = getattr(cls(), cls.FUNCTION)
    assert set(inputs) <= set(run.__code__.co_varnames[: run.__code__.co_argcount])
    assert cls.CATEGORY == "SimplyPNG"


def test_importing_the_pack_loads_no_model_code():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import simplypng; "
        "print(any(m.startswith('simplypng.models') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(COMFY_NODES)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- model-backed nodes (stubs) ----------------------------------------------------------------


def test_segment_predicts_the_whole_batch(segmenter):
    mask, resolution = nodes.SimplyPNGSegment().run(_subjects(3))
    assert mask.shape == (3, 48, 64) and mask.dtype == torch.float32
    assert segmenter.batches == [(3, 48, 64, 3)]
    assert mask[2, 15, 20] == 1 and mask[2, 40, 60] == 0
    assert segmenter.names == ["birefnet"] and resolution == 320


def test_segment_runs_the_named_segmenter(segmenter):
    nodes.SimplyPNGSegment().run(_subjects(1), "u2netp")
    assert segmenter.names == ["u2netp"]
    assert nodes.SimplyPNGSegment.INPUT_TYPES()["required"]["model"][0] == ["birefnet", "u2netp"]


def test_segment_names_match_the_registry():
    from simplypng.models.registry import SEGMENTERS

    assert list(SEGMENTERS) == nodes.SEGMENTER_NAMES


def test_segment_rejects_a_segmenter_answer_of_the_wrong_shape(monkeypatch):
    class Wrong:
        def predict(self, images):
            return np.zeros(images.shape[:2], np.float32)

    monkeypatch.setattr(nodes, "_get_segmenter", lambda name: Wrong())
    with pytest.raises(RuntimeError, match="expected"):
        nodes.SimplyPNGSegment().run(_subjects(2))


def test_inpaint_keeps_unmasked_pixels_and_broadcasts_the_mask(inpainter):
    images = torch.rand(2, 40, 40, 3)
    mask = torch.zeros(1, 40, 40)
    mask[0, 10:20, 10:20] = 1
    (out,) = nodes.SimplyPNGInpaint().run(images, mask, 512, 0.5)
    keep = mask[0] == 0
    assert out.shape == images.shape
    assert torch.equal(out[:, keep], images[:, keep])
    assert torch.all(out[:, 10:20, 10:20] == 0.5)
    assert inpainter.calls == 2


def test_inpaint_with_an_empty_mask_never_loads_the_model(monkeypatch):
    def fail():
        raise AssertionError("the inpainter must not be loaded")

    monkeypatch.setattr(nodes, "_get_inpainter", fail)
    images = torch.rand(1, 16, 16, 3)
    (out,) = nodes.SimplyPNGInpaint().run(images, torch.zeros(1, 16, 16), 512, 0.5)
    assert out is images


# --- image nodes -------------------------------------------------------------------------------


def test_matte_broadcasts_one_mask_over_a_batch_and_fits_its_size():
    images = _subjects(3)
    placeholder = torch.ones(1, 64, 64)  # e.g. LoadImage's 64x64 mask: resized to the image
    (rgba,) = nodes.SimplyPNGMatte().run(images, placeholder, 2, True)
    assert rgba.shape == (3, 48, 64, 4)
    assert torch.all(rgba[..., 3] == 1)


def test_matte_refuses_batches_that_cannot_broadcast():
    with pytest.raises(ValueError, match="batch sizes"):
        nodes.SimplyPNGMatte().run(_subjects(3), torch.ones(2, 48, 64), 2, False)


def test_bg_remove_chain_gives_straight_rgba_with_shadow(segmenter):
    images = _subjects(2)
    mask, resolution = nodes.SimplyPNGSegment().run(images)
    (rgba,) = nodes.SimplyPNGMatte().run(images, mask, 2, True, resolution)
    matte = rgba.clone()
    (shadowed,) = nodes.SimplyPNGShadow().run(rgba, "hard", 5, 0, 0.5, 0.0)
    # ComfyUI caches node outputs: inputs must never be modified in place.
    assert torch.equal(images, _subjects(2)) and torch.equal(rgba, matte)
    assert shadowed.shape == (2, 48, 64, 4)
    assert torch.allclose(shadowed[0, 12:18, 30:35, 3], torch.tensor(0.5), atol=1 / 255)
    assert torch.all(shadowed[:, 0, :, 3] == 0)
    (unchanged,) = nodes.SimplyPNGShadow().run(rgba, "none", 5, 0, 0.5, 0.0)
    assert unchanged is rgba


def test_cutout_returns_one_tensor_per_image_of_its_own_size():
    images = torch.zeros(2, 48, 64, 4)
    images[0, 10:20, 10:30] = 1.0
    images[1, 5:40, 20:30] = 1.0
    (crops,) = nodes.SimplyPNGCutout().run(images, 2.0, "px", False, 0, 64)
    assert nodes.SimplyPNGCutout.OUTPUT_IS_LIST == (True,)
    assert [tuple(c.shape) for c in crops] == [(1, 14, 24, 4), (1, 39, 14, 4)]


def test_white_background_batch_is_rgb_on_the_canvas():
    images = torch.zeros(2, 48, 64, 4)
    images[:, 10:20, 10:30] = 1.0
    images[:, 10:20, 10:30, :3] = 0.2
    (out,) = nodes.SimplyPNGWhiteBackground().run(images, 0.85, 400, 300, False)
    assert out.shape == (2, 300, 400, 3)
    assert torch.all(out[:, 0] == 1.0)


def test_removal_mask_from_regions_and_a_mask_image_batch():
    image = torch.zeros(1, 20, 30, 3)
    regions = '[{"kind": "rect", "x": 2, "y": 2, "w": 4, "h": 4}]'
    (only_regions,) = nodes.SimplyPNGRemovalMask().run(image, regions, "px", 0)
    assert only_regions.shape == (1, 20, 30) and only_regions.sum() == 16
    mask_images = torch.zeros(2, 10, 15, 3)
    mask_images[1, 5:, 10:] = 1.0  # white = remove, at half size
    (both,) = nodes.SimplyPNGRemovalMask().run(image, regions, "px", 1, mask_images)
    assert both.shape == (2, 20, 30)
    assert both[0].sum() < both[1].sum() and both[1, 15, 25] == 1


def test_removal_mask_ignores_transparent_pixels_of_the_mask_image():
    image = torch.zeros(1, 20, 30, 3)
    white = torch.ones(1, 10, 15, 3)  # LoadImage's IMAGE drops alpha: all white here
    transparency = torch.zeros(1, 10, 15)
    transparency[:, :, :10] = 1.0  # its MASK (1 - alpha): the left two thirds are transparent
    (mask,) = nodes.SimplyPNGRemovalMask().run(image, "[]", "px", 0, white, transparency)
    assert mask.shape == (1, 20, 30)
    assert not mask[0, :, :20].any() and mask[0, :, 20:].all()
    # LoadImage's 64x64 placeholder for a mask image without alpha: everything counts
    (opaque,) = nodes.SimplyPNGRemovalMask().run(
        image, "[]", "px", 0, white, torch.zeros(1, 64, 64)
    )
    assert opaque.all()


@pytest.mark.parametrize(
    ("regions", "mask_image", "transparency", "message"),
    [
        ('[{"kind": "rect", "x": 40, "y": 0, "w": 5, "h": 5}]', None, None, "regions do not"),
        ('[{"kind": "rect", "x": 1e308, "y": 1e308, "w": 1e308, "h": 1}]', None, None, "regions"),
        ("[]", None, None, "no regions and no mask image"),
        ("[]", torch.zeros(1, 10, 15, 3), None, "mask image marks no pixel"),
        ("[]", torch.ones(1, 10, 15, 3), torch.ones(1, 10, 15), "mask image marks no pixel"),
    ],
)
def test_a_removal_mask_covering_nothing_is_an_error(regions, mask_image, transparency, message):
    from simplypng.ops.errors import InvalidRegionsError

    image = torch.zeros(1, 20, 30, 3)
    with pytest.raises(InvalidRegionsError, match=message):
        nodes.SimplyPNGRemovalMask().run(image, regions, "px", 8, mask_image, transparency)


def test_fill_transparent_uses_the_loadimage_mask_convention():
    image = torch.zeros(1, 4, 6, 3)
    image[..., 3:, :] = torch.tensor([0.2, 0.4, 0.6])
    transparency = torch.zeros(1, 4, 6)
    transparency[..., :3] = 1.0  # LoadImage: 1 - alpha, so the left half is transparent
    (out,) = nodes.SimplyPNGFillTransparent().run(image, transparency)
    assert out.shape == (1, 4, 6, 3)
    assert torch.allclose(out[0, :, 0], torch.tensor([0.2, 0.4, 0.6]))


def test_upscale_requests_the_model_branch_only_when_below_target():
    node = nodes.SimplyPNGUpscaleToLongEdge()
    small, large = torch.zeros(1, 100, 120, 3), torch.zeros(1, 300, 200, 3)
    assert node.check_lazy_status(small, None, 256) == ["upscaled"]
    assert node.check_lazy_status(small, torch.zeros(1, 400, 480, 3), 256) == []
    assert node.check_lazy_status(large, None, 256) == []


def test_upscale_uses_the_model_output_and_keeps_alpha():
    original = torch.zeros(2, 48, 64, 3)
    original[..., 0] = 1.0
    upscaled = torch.zeros(2, 192, 256, 3)
    upscaled[..., 1] = 1.0  # a different colour proves which branch was used
    transparency = torch.zeros(1, 48, 64)
    transparency[:, :, :32] = 1.0
    (out,) = nodes.SimplyPNGUpscaleToLongEdge().run(original, upscaled, 300, transparency)
    assert out.shape == (2, 225, 300, 4)
    assert torch.all(out[:, :, 200:, 1] == 1.0) and torch.all(out[:, :, 200:, 0] == 0.0)
    # Alpha edge at x = 150; Lanczos reaches 3 source px (14 px here) to either side.
    assert torch.all(out[:, :, :135, 3] == 0) and torch.all(out[:, :, 165:, 3] == 1)


def test_upscale_of_a_large_input_only_resizes_and_drops_a_placeholder_alpha():
    original = torch.full((1, 300, 400, 3), 0.4)
    placeholder = torch.zeros(1, 64, 64)  # LoadImage on a JPEG: fully opaque
    (out,) = nodes.SimplyPNGUpscaleToLongEdge().run(original, None, 256, placeholder)
    assert out.shape == (1, 192, 256, 3)
    assert torch.allclose(out, torch.tensor(102 / 255))


def test_colour_key_batch():
    images = torch.ones(2, 8, 8, 3)
    images[1, :4] = 0.0
    (out,) = nodes.SimplyPNGColourKey().run(images, "#ffffff", 16, 16)
    assert out.shape == (2, 8, 8, 4)
    assert torch.all(out[0, ..., 3] == 0) and torch.all(out[1, :4, :, 3] == 1)
