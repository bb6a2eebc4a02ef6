"""u2netp, the lite segmenter: runtime choice, the ONNX-to-torch conversion, the loader's
checks, and the real model's masks (the file bootstrap extracts from the pinned PyPI wheel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")

from simplypng.models import registry, u2netp  # noqa: E402
from simplypng.models.errors import InferenceError, ModelFileError  # noqa: E402
from simplypng.models.segmenter import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from simplypng.models.u2netp_arch import U2NetP, onnx_convolutions  # noqa: E402

from handler.quality.checks import iou  # noqa: E402
from handler.quality.scenes import all_scenes  # noqa: E402
from tests.fakes.real_models import require_u2netp, u2netp_entry  # noqa: E402

pytestmark = pytest.mark.torch
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def real_file() -> Path:
    return require_u2netp()


@pytest.fixture
def models_dir(real_file: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A models folder holding the real u2netp and a lock with its real entry."""
    entry = u2netp_entry()
    target = tmp_path / entry["dest"]
    target.parent.mkdir(parents=True)
    shutil.copyfile(real_file, target)
    lock = tmp_path / "models.lock"
    lock.write_text(json.dumps({"lock_version": 1, "models": [entry]}))
    return tmp_path, lock


def _pixels(scene) -> torch.Tensor:
    return torch.from_numpy(np.asarray(scene.image, np.float32) / 255.0)


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "device", "installed", "chosen"),
    [
        ("auto", CPU, True, "onnxruntime"),
        ("auto", CPU, False, "torch"),
        ("auto", CUDA, True, "torch"),
        ("torch", CPU, True, "torch"),
        ("onnxruntime", CUDA, True, "onnxruntime"),
    ],
)
def test_runtime_choice(requested, device, installed, chosen) -> None:
    assert u2netp.choose_runtime(requested, device, installed) == chosen


def test_an_unusable_runtime_request_is_a_clear_error() -> None:
    with pytest.raises(ModelFileError, match="not installed"):
        u2netp.choose_runtime("onnxruntime", CPU, False)
    with pytest.raises(ModelFileError, match="SIMPLYPNG_U2NETP_RUNTIME='tensorrt'"):
        u2netp.choose_runtime("tensorrt", CPU, True)


def test_prepare_scales_by_the_peak_then_normalises() -> None:
    image = torch.full((1, 3, 4, 4), 0.5)
    got = u2netp.prepare(image)
    want = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(got[0, :, 0, 0], want)


def test_probabilities_are_kept_as_they_are_and_shapes_checked() -> None:
    probs = torch.tensor([0.1, 0.2]).view(1, 1, 1, 2)
    assert torch.equal(u2netp.probabilities(probs, 1), probs)  # no per-image stretch
    with pytest.raises(InferenceError, match="2x1xHxW"):
        u2netp.probabilities(probs, 2)
    with pytest.raises(InferenceError):
        u2netp.probabilities([probs], 1)


def test_the_architecture_lists_its_convolutions_in_run_order() -> None:
    model = U2NetP()
    convs = onnx_convolutions(model)
    assert len(convs) == 119 == len({id(c) for c in convs})
    assert {id(m) for m in model.modules() if isinstance(m, torch.nn.Conv2d)} == {
        id(c) for c in convs
    }
    assert convs[0].in_channels == 3 and convs[-1].in_channels == 6  # first stage .. fuse
    # RSU7: its input conv and six levels down, then the dilated bottom
    assert [c.dilation for c in convs[:8]] == [(1, 1)] * 7 + [(2, 2)]


# --- the real model ----------------------------------------------------------------------------


def test_torch_conversion_matches_onnxruntime(real_file: Path) -> None:
    """Both runtimes read the same bytes and must return the same masks."""
    data = real_file.read_bytes()
    ort_model = u2netp.OnnxRuntimeModel(data, real_file)
    torch_model = u2netp.torch_model(data, real_file)
    x = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.inference_mode():
        want, got = ort_model(x), torch_model(x)
    assert got.shape == want.shape == (2, 1, 320, 320)
    assert float((got - want).abs().max()) < 1e-4


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_real_u2netp_segments_the_product_scenes(models_dir, runtime) -> None:
    folder, lock = models_dir
    segmenter = u2netp.load_u2netp(folder, lock, False, CPU, runtime)
    assert segmenter.runtime == runtime and segmenter.spec.size == 320
    scenes = all_scenes()
    masks = segmenter.predict(torch.stack([_pixels(s) for s in scenes]))
    assert masks.shape == (len(scenes), 384, 512)
    for scene, mask in zip(scenes, masks, strict=True):
        assert iou(mask.numpy() >= 0.5, scene.mask) > 0.98, scene.name


def test_an_empty_studio_sweep_has_no_subject(models_dir) -> None:
    """No min-max stretch: a frame with nothing in it stays empty (the cutout says NO_SUBJECT)."""
    folder, lock = models_dir
    segmenter = u2netp.load_u2netp(folder, lock, False, CPU)
    sweep = torch.full((1, 300, 400, 3), 0.86)
    assert float(segmenter.predict(sweep).max()) < 0.05


def test_a_damaged_file_is_refused_before_it_is_parsed(models_dir) -> None:
    folder, lock = models_dir
    path = folder / u2netp_entry()["dest"]
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        u2netp.load_u2netp(folder, lock, False, CPU, "torch")
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(ModelFileError, match="bytes"):
        u2netp.load_u2netp(folder, lock, False, CPU)


def test_bytes_that_are_not_the_u2netp_export_are_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        u2netp.torch_model(b"not a model", tmp_path / "x.onnx")
    with pytest.raises(ModelFileError, match="onnxruntime cannot load"):
        u2netp.OnnxRuntimeModel(b"not a model", tmp_path / "x.onnx")


def test_registry_serves_u2netp_by_name(models_dir, monkeypatch) -> None:
    folder, lock = models_dir
    monkeypatch.setenv(u2netp.ENV_RUNTIME, "torch")
    registry.configure(models_dir=folder, lock_path=lock, device="cpu")
    try:
        first = registry.get_segmenter("u2netp")
        assert first.runtime == "torch" and registry.get_segmenter("u2netp") is first
        with pytest.raises(ValueError, match="unknown segmenter 'sam'"):
            registry.get_segmenter("sam")
    finally:
        registry.configure()
