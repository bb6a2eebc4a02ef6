"""The node pack's model loaders, on random-weight models in the real file formats.

BiRefNet runs as a stand-in snapshot (same class contract, eval output and state-dict dtypes,
tiny layers) through the real loader; LaMa is full size (spandrel's architecture, random
weights).
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the nodes extra)")
pytest.importorskip("spandrel", reason="needs spandrel (the nodes extra)")
pytest.importorskip("safetensors", reason="needs safetensors (the nodes extra)")

from comfy_nodes.simplypng.models import (  # noqa: E402
    device,
    location,
    registry,
    snapshot_deps,
)
from comfy_nodes.simplypng.models.errors import InferenceError, ModelFileError  # noqa: E402
from comfy_nodes.simplypng.models.inpainter import Inpainter, tile_spans  # noqa: E402
from comfy_nodes.simplypng.models.segmenter import (  # noqa: E402
    BIREFNET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NATIVE_SIZE,
    Segmenter,
    final_logits,
    grow,
    normalise,
    shrink,
)
from tests.fakes.tiny_models import (  # noqa: E402
    birefnet_lock_entries,
    build_big_lama,
    build_birefnet_standin,
    build_tiny_esrgan,
    lock_entry,
    write_lock,
)

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
    # The pinned BiRefNet code imports timm's old module paths, which timm 1.x still serves.
    pytest.mark.filterwarnings("ignore:Importing from timm.models:FutureWarning"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BIREFNET_DIR = "birefnet/birefnet-general"
LAMA_DEST = "inpaint/big-lama.pt"
# The real state dict's int64 buffers: Swin's relative_position_index, BatchNorm's counter.
INT64_BUFFERS = ("relative_position_index", "num_batches_tracked")
# A stand-in whose logits are the sum of the ImageNet-normalised channels (white -> +7.3,
# black -> -6.0), its coarse branch zeroed: the mask of an image is known in advance.
HEAD_SUMS_CHANNELS = {
    "head.weight": torch.ones(1, 3, 1, 1),
    "head.bias": torch.zeros(1),
    "to_coarse.weight": torch.zeros(1, 4, 1, 1),
    "to_coarse.bias": torch.zeros(1),
}


@pytest.fixture(scope="session")
def lama_file(tmp_path_factory) -> Path:
    """One full-size random big-LaMa file for the whole session (about 200 MB, 2 s)."""
    return build_big_lama(tmp_path_factory.mktemp("lama") / "big-lama.pt")


def _store(root: Path, lama_file: Path, overrides=None, hub_classes=False) -> tuple[Path, Path]:
    """A models folder with a stand-in BiRefNet and big-LaMa, and the lock pinning them."""
    models = root / "models"
    build_birefnet_standin(models / BIREFNET_DIR, overrides=overrides, hub_classes=hub_classes)
    (models / "inpaint").mkdir(parents=True)
    (models / LAMA_DEST).symlink_to(lama_file)
    entries = birefnet_lock_entries(models, BIREFNET_DIR)
    entries.append(
        lock_entry(
            models / LAMA_DEST,
            model="big-lama",
            dest=LAMA_DEST,
            tasks=("object_remove",),
            licence="Apache-2.0",
        )
    )
    return models, write_lock(root / "models.lock", entries)


@pytest.fixture
def store(tmp_path, lama_file):
    models, lock = _store(tmp_path, lama_file)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    yield models, lock
    registry.configure()


@pytest.fixture(scope="session")
def lama_inpainter(tmp_path_factory, lama_file) -> Inpainter:
    """The real loader's Inpainter, loaded once (each load reads 200 MB)."""
    root = tmp_path_factory.mktemp("lama-store")
    models, lock = _store(root, lama_file)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        return registry.get_inpainter()
    finally:
        registry.configure()


# --- segmenter --------------------------------------------------------------------------


def test_segmenter_returns_one_mask_per_image_at_its_size(store):
    images = np.random.default_rng(0).random((2, 300, 200, 3), dtype=np.float32)
    masks = registry.get_segmenter().predict(images)
    assert isinstance(masks, torch.Tensor) and masks.device.type == "cpu"
    assert masks.shape == (2, 300, 200)
    assert masks.dtype == torch.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert not torch.allclose(masks[0], masks[1])


def test_a_batch_gives_the_masks_of_its_images_one_by_one(store):
    images = torch.rand((3, 64, 48, 3), generator=torch.Generator().manual_seed(1))
    segmenter = registry.get_segmenter()
    together = segmenter.predict(images)
    alone = torch.cat([segmenter.predict(images[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)


class _Counting(torch.nn.Module):
    """Records each forward's batch size; runs out of memory above `fits` images."""

    def __init__(self, fits: int):
        super().__init__()
        self.fits = fits
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(len(x))
        if len(x) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return [x.mean(dim=1, keepdim=True)]


def test_the_batch_runs_as_one_forward_in_chunks_of_max_batch():
    model = _Counting(fits=8)
    segmenter = Segmenter(model, torch.device("cpu"), torch.float32, max_batch=4)
    masks = segmenter.predict(torch.rand(6, 16, 16, 3))
    assert masks.shape == (6, 16, 16) and model.batches == [4, 2]


def test_out_of_memory_on_a_batch_falls_back_to_one_image_at_a_time(caplog):
    model = _Counting(fits=1)
    segmenter = Segmenter(model, torch.device("cpu"), torch.float32)
    images = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    masks = segmenter.predict(images)
    assert model.batches == [3, 1, 1, 1]
    assert "one image at a time" in caplog.text
    model_input = normalise(shrink(images.permute(0, 3, 1, 2), NATIVE_SIZE))
    expected = torch.sigmoid(model_input.mean(1, keepdim=True))
    torch.testing.assert_close(masks, grow(expected, 16, 16), atol=1e-4, rtol=0)


def test_segmenter_normalises_runs_the_model_and_resizes_back(tmp_path, lama_file):
    # Without normalisation black would give sigmoid(0) = 0.5 instead of sigmoid(-6.0).
    models, lock = _store(tmp_path, lama_file, overrides=HEAD_SUMS_CHANNELS)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        image = np.zeros((1, 300, 200, 3), dtype=np.float32)
        image[0, 100:200, 50:150] = 1.0
        mask = registry.get_segmenter().predict(image)[0].numpy()
    finally:
        registry.configure()
    assert mask.shape == (300, 200)
    assert mask[150, 100] > 0.99
    assert mask[120:180, 70:130].min() > 0.99
    assert mask[10, 10] < 0.01 and mask[150, 190] < 0.01 and mask[290, 100] < 0.01


def test_birefnet_input_is_resized_to_1024_and_imagenet_normalised():
    out = normalise(shrink(torch.full((1, 3, 37, 53), 0.5), NATIVE_SIZE))
    assert out.shape == (1, 3, 1024, 1024)
    for channel in range(3):
        expected = (0.5 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[0, channel], torch.tensor(expected), atol=1e-5)


def test_birefnet_logits_become_probabilities_at_the_image_size():
    logits = torch.zeros(1, 1, 8, 8)
    logits[..., :4] = 20.0
    probs = grow(BIREFNET.probabilities([logits], 1), 5, 16)
    assert probs.shape == (1, 5, 16)
    assert torch.allclose(probs[0, :, :6], torch.ones(5, 6), atol=1e-4)
    assert torch.allclose(probs[0, :, 10:], torch.full((5, 6), 0.5), atol=1e-4)


@pytest.mark.parametrize("shape", [(10, 10, 3), (1, 10, 10, 4), (0, 10, 10, 3)])
def test_segmenter_rejects_a_batch_of_the_wrong_shape(shape):
    segmenter = Segmenter(torch.nn.Identity(), torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="BxHxWx3"):
        segmenter.predict(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize(
    "output",
    [
        [],
        "x",
        torch.zeros(1, 3, 8, 8),
        [torch.zeros(1, 8, 8)],
        [torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8)],  # last of two: 3 channels
        [torch.zeros(2, 1, 8, 8)],  # two masks for one image
        torch.zeros(2, 1, 8, 8),
        [[torch.zeros(1, 1, 8, 8)], [None]],  # what BiRefNet returns in train mode
    ],
    ids=[
        "empty",
        "str",
        "3-channels",
        "3-dims",
        "two-last-3-channels",
        "list-wrong-batch",
        "wrong-batch",
        "train-mode",
    ],
)
def test_an_unexpected_model_output_is_a_clear_error(output):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return output

    segmenter = Segmenter(Odd(), torch.device("cpu"), torch.float32)
    with pytest.raises(InferenceError, match="unexpected output"):
        segmenter.predict(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_final_logits_are_the_full_resolution_tensor_of_the_eval_output():
    logits = torch.zeros(3, 1, 16, 16)
    assert final_logits([logits], 3) is logits  # BiRefNet in eval: [logits]
    assert final_logits((logits,), 3) is logits
    assert final_logits(logits, 3) is logits
    with pytest.raises(InferenceError, match="want 2x1xHxW"):
        final_logits([logits], 2)
    with pytest.raises(InferenceError, match="want 3x1xHxW"):
        final_logits([logits, torch.zeros(3, 2, 16, 16)], 3)


def test_the_standin_file_stores_int64_buffers_beside_fp16_floats(tmp_path):
    # As the pinned model.safetensors does (67 int64 buffers there): a file cast wholesale to
    # fp16 would let a loader that mishandles the int64 buffers pass here and fail for real.
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = build_birefnet_standin(tmp_path)["model.safetensors"]
    with safe_open(str(weights), framework="pt") as handle:
        stored = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118
    int64 = {key for key, dtype in stored.items() if dtype == "I64"}
    assert {key.rsplit(".", 1)[1] for key in int64} == set(INT64_BUFFERS)
    assert int64 == {key for key in stored if key.endswith(INT64_BUFFERS)}
    assert {stored[key] for key in stored.keys() - int64} == {"F16"}
    state = load_file(str(weights))
    index = state["mix.relative_position_index"]
    assert index.shape == (4, 4) and index.min() == 0
    assert index.max() == len(state["mix.relative_position_bias_table"]) - 1
    assert state["bn.num_batches_tracked"].item() == 123_457  # exact: fp16 tops out at 65504


@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16"])
def test_the_loader_casts_only_the_floats_and_keeps_int64_buffers(store, monkeypatch, half):
    # float32 is what the loader picks on the CPU; float16 what it picks on CUDA (forced here).
    from safetensors.torch import load_file

    if half:
        monkeypatch.setattr(device, "choose_dtype", lambda *_: torch.float16)
    models, _ = store
    saved = load_file(str(models / BIREFNET_DIR / "model.safetensors"))
    segmenter = registry.get_segmenter()
    assert segmenter.dtype == (torch.float16 if half else torch.float32)
    state = segmenter.model.state_dict()
    assert state.keys() == saved.keys()
    for key, value in state.items():
        if saved[key].dtype == torch.int64:
            assert value.dtype == torch.int64, key
            assert torch.equal(value, saved[key]), key
        else:
            assert value.dtype == segmenter.dtype, key
    # The forward indexes its bias table with relative_position_index: an int64 index.
    masks = segmenter.predict(torch.rand(2, 40, 30, 3, generator=torch.Generator().manual_seed(4)))
    assert masks.shape == (2, 40, 30) and torch.isfinite(masks).all()


@pytest.mark.parametrize("hub_classes", [False, True], ids=["plain", "hub-classes"])
def test_the_standin_returns_what_birefnet_returns_in_eval(tmp_path, lama_file, hub_classes):
    # The real BiRefNet in eval mode: a one-element list of Bx1xHxW full-resolution logits.
    models, lock = _store(tmp_path, lama_file, hub_classes=hub_classes)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        segmenter = registry.get_segmenter()
    finally:
        registry.configure()
    model = segmenter.model
    assert isinstance(model, torch.nn.Module) and not model.training
    pixels = normalise(shrink(torch.rand(2, 3, 40, 30), NATIVE_SIZE))
    with torch.no_grad():
        outputs = model(pixels)
        assert isinstance(outputs, list) and len(outputs) == 1
        assert outputs[0].shape == (2, 1, 1024, 1024) and outputs[0].dtype == segmenter.dtype
        assert final_logits(outputs, 2) is outputs[0]
        # Left in train mode it returns [scaled_preds, class_preds_lst], as the real one does,
        # and the loader's output check refuses that.
        training = model.train()(pixels)
    assert len(training) == 2 and isinstance(training[1], list)
    with pytest.raises(InferenceError, match="unexpected output"):
        final_logits(training, 2)


def test_segmenter_out_of_memory_is_a_clear_error():
    class Exhausted(torch.nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory")

    segmenter = Segmenter(Exhausted(), torch.device("cpu"), torch.float32)
    with pytest.raises(InferenceError, match="out of memory"):
        segmenter.predict(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_models_stay_loaded_until_reset(store):
    first = registry.get_segmenter()
    assert registry.get_segmenter() is first
    registry.reset_cache()
    assert registry.get_segmenter() is not first


def test_loading_forces_hub_libraries_offline(store, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    registry.get_segmenter()
    assert registry.get_segmenter().dtype == torch.float32
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_tampered_code_is_refused_before_it_runs(store):
    models, _ = store
    code = models / BIREFNET_DIR / "birefnet.py"
    # Same size, different bytes: the size check passes, the sha256 check must not.
    code.write_text(code.read_text().replace("would download", "would DOWNLOAD"))
    with pytest.raises(ModelFileError, match=r"birefnet\.py.*sha256"):
        registry.get_segmenter()


def test_missing_weights_name_the_fetch_script(store):
    models, _ = store
    (models / BIREFNET_DIR / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"missing.*fetch_models"):
        registry.get_segmenter()


def test_weights_of_the_wrong_size_are_refused(store):
    models, _ = store
    with open(models / BIREFNET_DIR / "model.safetensors", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelFileError, match=r"bytes, models\.lock says"):
        registry.get_segmenter()


def test_weights_sha256_is_checked_only_when_asked(store):
    models, lock = store
    weights = models / BIREFNET_DIR / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # last byte of the last tensor: still a loadable file
    weights.write_bytes(bytes(data))
    registry.get_segmenter()  # size-only check by default: loads
    registry.configure(models_dir=models, lock_path=lock, device="cpu", verify_sha256=True)
    with pytest.raises(ModelFileError, match="sha256"):
        registry.get_segmenter()


def test_weights_that_do_not_fit_the_code_are_refused(tmp_path, lama_file):
    overrides = {"extra.weight": torch.zeros(2)}
    models, lock = _store(tmp_path, lama_file, overrides=overrides)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        with pytest.raises(ModelFileError, match=r"does not fit the BiRefNet code.*extra"):
            registry.get_segmenter()
    finally:
        registry.configure()


def test_an_entry_without_sha256_is_never_loaded(store):
    models, lock = store
    entries = birefnet_lock_entries(models, BIREFNET_DIR)
    entries[2] |= {"sha256": None, "verify": "pending"}
    registry.configure(models_dir=models, lock_path=write_lock(lock, entries), device="cpu")
    with pytest.raises(ModelFileError, match="no sha256"):
        registry.get_segmenter()


def test_a_model_missing_from_the_lock_is_refused(store):
    models, lock = store
    registry.configure(models_dir=models, lock_path=write_lock(lock, []), device="cpu")
    with pytest.raises(ModelFileError, match="not listed"):
        registry.get_segmenter()


def test_a_missing_python_dependency_is_named_and_cleaned_up(store):
    models, lock = store
    code = models / BIREFNET_DIR / "birefnet.py"
    code.write_text("import simplypng_no_such_package\n" + code.read_text())
    registry.configure(
        models_dir=models,
        lock_path=write_lock(lock, birefnet_lock_entries(models, BIREFNET_DIR)),
        device="cpu",
    )
    before = set(sys.modules)
    with pytest.raises(ModelFileError, match="simplypng_no_such_package"):
        registry.get_segmenter()
    assert not [name for name in set(sys.modules) - before if "birefnet" in name]


def test_every_missing_package_is_named_before_any_snapshot_code_runs(store, tmp_path):
    models, lock = store
    ran = tmp_path / "ran"
    config = models / BIREFNET_DIR / "BiRefNet_config.py"
    config.write_text(f"open({str(ran)!r}, 'w').close()\n" + config.read_text())
    code = models / BIREFNET_DIR / "birefnet.py"
    code.write_text(
        "import os\nimport simplypng_absent_a.sub\n"
        "try:\n    import simplypng_optional\nexcept ImportError:\n    pass\n"
        "from simplypng_absent_b import thing\n" + code.read_text()
    )
    registry.configure(
        models_dir=models,
        lock_path=write_lock(lock, birefnet_lock_entries(models, BIREFNET_DIR)),
        device="cpu",
    )
    with pytest.raises(ModelFileError) as caught:
        registry.get_segmenter()
    assert "'simplypng_absent_a', 'simplypng_absent_b'" in str(caught.value)
    assert "simplypng_optional" not in str(caught.value) and "'os'" not in str(caught.value)
    assert not ran.exists()


def test_an_installed_package_without_an_imported_name_is_a_clear_error(store):
    models, lock = store
    code = models / BIREFNET_DIR / "birefnet.py"
    code.write_text("from numpy import simplypng_no_such_name\n" + code.read_text())
    registry.configure(
        models_dir=models,
        lock_path=write_lock(lock, birefnet_lock_entries(models, BIREFNET_DIR)),
        device="cpu",
    )
    with pytest.raises(ModelFileError, match=r"does not import.*simplypng_no_such_name"):
        registry.get_segmenter()


def test_birefnet_code_dependencies_are_installed():
    # Every module and name the pinned code imports (as snapshot_deps records them) resolves.
    assert (
        snapshot_deps.unresolved(
            {module: set(names) for module, names in snapshot_deps.EXPECTED_IMPORTS.items()}
        )
        == []
    )
    # ... and comes from a pinned requirement of the project, so the image installs it too.
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
        for req in [*project["dependencies"], *project["optional-dependencies"]["nodes"]]
    }
    assert not snapshot_deps.EXPECTED_PACKAGES - required


def test_import_scan_keeps_third_party_modules_and_the_names_taken():
    source = (
        "from __future__ import annotations\nimport os, math\nimport torch.nn as nn\n"
        "from timm.models.layers import DropPath, trunc_normal_\nfrom . import sibling\n"
        "from .BiRefNet_config import BiRefNetConfig\n"
        "def f():\n    from kornia.filters import laplacian\n"
        "try:\n    import optional_a\nexcept (ValueError, ImportError):\n    import fallback_b\n"
        "try:\n    import needed_c\nexcept ValueError:\n    pass\n"
    )
    assert snapshot_deps.code_imports(source) == {
        "torch.nn": set(),
        "timm.models.layers": {"DropPath", "trunc_normal_"},
        "kornia.filters": {"laplacian"},
        "fallback_b": set(),
        "needed_c": set(),
    }
    assert snapshot_deps.undeclared_packages({"torch.nn": set(), "needed_c": set()}) == ["needed_c"]
    assert snapshot_deps.unresolved({"numpy": {"ndarray", "nope"}, "simplypng_gone": set()}) == [
        "numpy: has no 'nope'",
        "simplypng_gone: No module named 'simplypng_gone'",
    ]
    with pytest.raises(ModelFileError, match="cannot parse"):
        snapshot_deps.code_imports("def (:\n")


@pytest.mark.parametrize("hub_classes", [False, True], ids=["plain", "hub-classes"])
def test_snapshot_deps_record_every_import_of_the_standin(tmp_path, hub_classes):
    # The hub stand-in takes the real file's imports, timm.models.registry.register_model
    # among them: each module and name must be one EXPECTED_IMPORTS records, and resolve.
    files = build_birefnet_standin(tmp_path, hub_classes=hub_classes)
    code = [files["birefnet.py"], files["BiRefNet_config.py"]]
    for path in code:
        for module, names in snapshot_deps.code_imports(path.read_bytes(), str(path)).items():
            assert module in snapshot_deps.EXPECTED_IMPORTS, f"{path.name}: {module}"
            assert names <= set(snapshot_deps.EXPECTED_IMPORTS[module]), f"{path.name}: {module}"
    assert snapshot_deps.check_files(code) == []
    if hub_classes:
        imports = snapshot_deps.code_imports(files["birefnet.py"].read_bytes())
        assert imports["timm.models.registry"] == {"register_model"}


def test_snapshot_import_check_of_a_models_folder(tmp_path, capsys):
    models = tmp_path / "models"
    lock = write_lock(tmp_path / "models.lock", [])
    build_birefnet_standin(models / BIREFNET_DIR)
    lock = write_lock(tmp_path / "models.lock", birefnet_lock_entries(models, BIREFNET_DIR))
    argv = ["--lock", str(lock), "--models-dir", str(models)]
    assert snapshot_deps.main(argv) == 0
    assert "imports resolve (2 files)" in capsys.readouterr().out
    code = models / BIREFNET_DIR / "birefnet.py"
    code.write_text("import simplypng_absent\nfrom numpy import nope\n" + code.read_text())
    assert snapshot_deps.main(argv) == 1
    err = capsys.readouterr().err
    assert "imports 'simplypng_absent', which EXPECTED_IMPORTS does not list" in err
    assert "numpy: has no 'nope'" in err
    assert snapshot_deps.main(["--lock", str(lock), "--models-dir", str(tmp_path / "x")]) == 0
    assert "nothing to check" in capsys.readouterr().out


def test_a_snapshot_on_the_real_base_classes_and_imports_loads_and_predicts(tmp_path, lama_file):
    # transformers' PreTrainedModel, timm, kornia and einops at the pinned versions, through
    # the same build / strict load / eval / dtype path the real BiRefNet takes.
    models, lock = _store(tmp_path, lama_file, overrides=HEAD_SUMS_CHANNELS, hub_classes=True)
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        image = np.zeros((1, 64, 48, 3), dtype=np.float32)
        image[0, 16:48, 12:36] = 1.0
        segmenter = registry.get_segmenter()
        mask = segmenter.predict(image)[0].numpy()
    finally:
        registry.configure()
    from transformers import PreTrainedModel

    assert isinstance(segmenter.model, PreTrainedModel)
    assert not segmenter.model.training
    assert mask[32, 24] > 0.99 and mask[2, 2] < 0.01


def test_models_built_elsewhere_are_served_until_configure(store, lama_inpainter):
    built = Segmenter(torch.nn.Identity(), torch.device("cpu"), torch.float32)
    registry.use(segmenter=built)
    assert registry.get_segmenter() is built
    registry.use(inpainter=lama_inpainter)  # None for the other model leaves it alone
    assert registry.get_segmenter() is built and registry.get_inpainter() is lama_inpainter
    models, lock = store
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    assert registry.get_segmenter() is not built


def test_a_failed_load_is_retried_on_the_next_call(store):
    models, _ = store
    weights = models / BIREFNET_DIR / "model.safetensors"
    saved = weights.with_suffix(".bak")
    shutil.move(weights, saved)
    with pytest.raises(ModelFileError):
        registry.get_segmenter()
    shutil.move(saved, weights)
    assert isinstance(registry.get_segmenter(), Segmenter)


# --- where files are found; device and dtype ---------------------------------------------


def test_models_dir_comes_from_comfyui_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(models_dir="/comfy/m"))
    monkeypatch.setenv(location.ENV_MODELS_DIR, str(tmp_path))
    assert location.default_models_dir() == Path("/comfy/m")
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # not inside ComfyUI
    assert location.default_models_dir() == tmp_path
    monkeypatch.delenv(location.ENV_MODELS_DIR)
    with pytest.raises(ModelFileError, match="SIMPLYPNG_MODELS_DIR"):
        location.default_models_dir()


def test_default_lock_is_the_env_one_else_the_repository_models_lock(monkeypatch, tmp_path):
    monkeypatch.delenv(location.ENV_MODELS_LOCK, raising=False)
    assert location.default_lock_path() == Path(__file__).resolve().parents[2] / "models.lock"
    lock = write_lock(tmp_path / "image.lock", [])
    monkeypatch.setenv(location.ENV_MODELS_LOCK, str(lock))
    assert location.default_lock_path() == lock
    monkeypatch.setenv(location.ENV_MODELS_LOCK, str(tmp_path / "absent.lock"))
    with pytest.raises(ModelFileError, match="SIMPLYPNG_MODELS_LOCK"):
        location.default_lock_path()


def test_sha256_verification_env_flag(monkeypatch):
    monkeypatch.delenv(location.ENV_VERIFY_SHA256, raising=False)
    assert location.verify_sha256_default() is False
    monkeypatch.setenv(location.ENV_VERIFY_SHA256, "1")
    assert location.verify_sha256_default() is True


def test_device_comes_from_comfyui_when_inside_it(monkeypatch):
    fake = types.SimpleNamespace(get_torch_device=lambda: torch.device("cuda", 1))
    monkeypatch.setitem(sys.modules, "comfy", types.SimpleNamespace(model_management=fake))
    assert device.torch_device() == torch.device("cuda", 1)
    monkeypatch.setitem(sys.modules, "comfy", None)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.torch_device().type == expected


@pytest.mark.parametrize(
    ("dev", "prefer", "bf16", "expected"),
    [
        ("cpu", "fp16", True, torch.float32),
        ("cpu", "bf16", True, torch.float32),
        ("mps", "fp16", True, torch.float32),
        ("cuda", "fp16", False, torch.float16),
        ("cuda", "bf16", True, torch.bfloat16),
        ("cuda", "bf16", False, torch.float32),
    ],
)
def test_half_precision_only_on_cuda(dev, prefer, bf16, expected):
    assert device.choose_dtype(torch.device(dev), prefer, bf16) == expected


# --- inpainter ----------------------------------------------------------------------------


def test_inpainter_is_full_size_lama_in_float32_on_cpu(lama_inpainter):
    assert lama_inpainter.model.architecture.id == "LaMa"
    assert sum(p.numel() for p in lama_inpainter.model.model.parameters()) > 50_000_000
    assert lama_inpainter.dtype == torch.float32
    assert lama_inpainter.device.type == "cpu"


def test_inpainter_fills_the_hole_and_keeps_everything_else(lama_inpainter):
    rng = np.random.default_rng(1)
    image = rng.random((40, 53, 3), dtype=np.float32)  # 53: not a multiple of 8
    mask = np.zeros((40, 53), dtype=np.float32)
    mask[10:25, 20:40] = 1
    out = lama_inpainter.inpaint(image, mask)
    assert out.shape == image.shape and out.dtype == np.float32
    keep = mask == 0
    np.testing.assert_allclose(out[keep], image[keep], atol=1e-6)
    assert np.abs(out[~keep] - image[~keep]).max() > 1e-3
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_inpainter_handles_images_smaller_than_lamas_minimum(lama_inpainter):
    image = np.full((9, 11, 3), 0.25, dtype=np.float32)
    mask = np.zeros((9, 11))
    mask[3:6, 4:7] = 1
    out = lama_inpainter.inpaint(image, mask)
    assert out.shape == (9, 11, 3)
    np.testing.assert_allclose(out[mask == 0], 0.25, atol=1e-6)


def test_inpainter_without_a_hole_does_not_run_the_model():
    def explode(x, m):
        raise AssertionError("model must not run")

    inpainter = Inpainter(explode, torch.device("cpu"), torch.float32)
    image = np.random.default_rng(2).random((16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(inpainter.inpaint(image, np.zeros((16, 16))), image)


@pytest.mark.parametrize(
    ("image_shape", "mask_shape"), [((16, 16), (16, 16)), ((16, 16, 3), (16, 15))]
)
def test_inpainter_rejects_mismatched_inputs(image_shape, mask_shape):
    inpainter = Inpainter(lambda x, m: x, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError):
        inpainter.inpaint(np.zeros(image_shape), np.ones(mask_shape))


def test_inpainter_retries_in_tiles_after_out_of_memory():
    # A cheap LaMa-like fill (hole <- window mean) stands in for LaMa: this tests the tiling,
    # and full LaMa on several tiles would take seconds on CPU.
    seen: list[tuple[int, int]] = []

    def small_memory(x, m):
        seen.append((x.shape[2], x.shape[3]))
        if x.shape[2] * x.shape[3] > 160 * 160:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return x * (1 - m) + m * x.mean()

    inpainter = Inpainter(small_memory, torch.device("cpu"), torch.float32)
    image = np.random.default_rng(3).random((200, 300, 3), dtype=np.float32)
    mask = np.zeros((200, 300))
    mask[20:60, 90:140] = 1  # across two of the six 144px tiles
    out = inpainter.inpaint(image, mask)
    assert seen == [(200, 300), (144, 144), (144, 144)]
    keep = mask == 0
    np.testing.assert_array_equal(out[keep], image[keep])
    left, right = out[40, 100], out[40, 130]  # filled from the first and second tile
    assert not np.allclose(left, right)
    np.testing.assert_allclose(left, image[:144, :144].mean(), rtol=1e-5)
    np.testing.assert_allclose(right, image[:144, 80:224].mean(), rtol=1e-5)


def test_inpainter_gives_up_with_a_clear_error():
    def never_fits(x, m):
        raise torch.OutOfMemoryError("CUDA out of memory")

    inpainter = Inpainter(never_fits, torch.device("cpu"), torch.float32)
    mask = np.ones((300, 300))
    with pytest.raises(InferenceError, match=r"out of memory.*tiles"):
        inpainter.inpaint(np.zeros((300, 300, 3), dtype=np.float32), mask)


@pytest.mark.parametrize("length", [1, 100, 128, 129, 300, 513, 1000])
def test_tile_cores_cover_every_pixel_once(length):
    tile, overlap = 128, 32
    spans = tile_spans(length, tile, overlap)
    covered = np.zeros(length, dtype=int)
    for start, end, core_start, core_end in spans:
        assert 0 <= start <= core_start < core_end <= end <= length
        assert end - start <= tile
        covered[core_start:core_end] += 1
    assert covered.min() >= 1
    assert (covered[: spans[-1][2]] == 1).all()  # only the last window may overlap cores


def test_non_lama_weights_are_refused(tmp_path):
    models = tmp_path / "models"
    weights = build_tiny_esrgan(models / LAMA_DEST)
    lock = write_lock(
        tmp_path / "models.lock", [lock_entry(weights, model="big-lama", dest=LAMA_DEST)]
    )
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        with pytest.raises(ModelFileError, match="ESRGAN model, not LaMa"):
            registry.get_inpainter()
    finally:
        registry.configure()


def test_garbage_weights_are_refused(tmp_path):
    models = tmp_path / "models"
    (models / "inpaint").mkdir(parents=True)
    (models / LAMA_DEST).write_bytes(b"not a model at all" * 10)
    lock = write_lock(
        tmp_path / "models.lock", [lock_entry(models / LAMA_DEST, model="big-lama", dest=LAMA_DEST)]
    )
    registry.configure(models_dir=models, lock_path=lock, device="cpu")
    try:
        with pytest.raises(ModelFileError, match=r"big-lama\.pt"):
            registry.get_inpainter()
    finally:
        registry.configure()


# --- tiny ESRGAN for other tests ----------------------------------------------------------


@pytest.mark.parametrize(("scale", "suffix"), [(4, ".pth"), (2, ".pth"), (4, ".safetensors")])
def test_tiny_esrgan_is_detected_by_spandrel(tmp_path, scale, suffix):
    from spandrel import ModelLoader

    path = build_tiny_esrgan(tmp_path / f"RealESRGAN_x{scale}plus{suffix}", scale=scale)
    model = ModelLoader().load_from_file(path)
    assert model.architecture.id == "ESRGAN"
    assert model.scale == scale
    out = model(torch.rand(1, 3, 12, 16))
    assert out.shape == (1, 3, 12 * scale, 16 * scale)
