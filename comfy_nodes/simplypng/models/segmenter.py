"""Foreground segmentation: the Segmenter loop, and BiRefNet's loader (its pinned snapshot).

u2netp, the lite model, has its own loader in u2netp.py and runs through the same Segmenter.

The Hugging Face snapshot ships its architecture as code (birefnet.py importing
BiRefNet_config.py). We run that code from the checksummed bytes we pinned, build the class
directly and load model.safetensors with strict=True: transformers' from_pretrained path is
avoided because it has broken across transformers releases, and a loose load would leave a
layer random without any error.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import dtype_for, force_offline, release_memory
from .errors import InferenceError, ModelFileError
from .lockfile import ModelFile, read_model_files, read_verified, resolve_files, sha256_bytes
from .snapshot_deps import code_imports, missing_packages

log = logging.getLogger(__name__)

MODEL_NAME = "birefnet-general"
NATIVE_SIZE = 1024  # BiRefNet general was trained at 1024x1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENTRY_MODULE = "birefnet"
CLASS_NAME = "BiRefNet"
CONFIG_CLASS_NAME = "BiRefNetConfig"


def import_snapshot(package: str, sources: Mapping[str, tuple[Path, bytes]]) -> types.ModuleType:
    """Execute a snapshot's modules (stem -> (path, verified bytes)) as package `package`.

    The bytes already hashed are compiled, not the file re-read, so what runs is what was
    checked. Siblings run before the entry module so its relative imports
    (`from .BiRefNet_config import ...`) resolve from sys.modules. Returns the entry module.
    """
    entry_name = f"{package}.{ENTRY_MODULE}"
    if entry_name in sys.modules:  # the package name carries the code's hash
        return sys.modules[entry_name]
    if ENTRY_MODULE not in sources:
        raise ModelFileError(f"snapshot has no {ENTRY_MODULE}.py")
    _check_imports(sources)
    parent = types.ModuleType(package)
    parent.__path__ = []  # a package, but never searched on disk
    parent.__package__ = package
    created = [package]
    sys.modules[package] = parent
    order = sorted(sources, key=lambda stem: stem == ENTRY_MODULE)
    try:
        for stem in order:
            path, source = sources[stem]
            name = f"{package}.{stem}"
            module = types.ModuleType(name)
            module.__file__ = str(path)
            module.__package__ = package
            module.__spec__ = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
            sys.modules[name] = module
            created.append(name)
            exec(compile(source, str(path), "exec"), module.__dict__)
            setattr(parent, stem, module)
    except ModuleNotFoundError as exc:
        _forget(created)
        raise ModelFileError(
            f"BiRefNet code at {sources[ENTRY_MODULE][0]} needs the Python package "
            f"{exc.name!r}, which is not installed"
        ) from exc
    except ImportError as exc:  # an installed package without a name the code imports
        _forget(created)
        raise ModelFileError(
            f"BiRefNet code at {sources[ENTRY_MODULE][0]} does not import: {exc} "
            "(the `nodes` extra of pyproject.toml pins the versions it needs)"
        ) from exc
    except BaseException:
        _forget(created)
        raise
    return sys.modules[entry_name]


def _check_imports(sources: Mapping[str, tuple[Path, bytes]]) -> None:
    """Name every package the snapshot imports that is missing, before any of it runs."""
    missing = sorted(
        {
            package
            for path, source in sources.values()
            for package in missing_packages(code_imports(source, str(path)))
        }
    )
    if missing:
        raise ModelFileError(
            f"BiRefNet code at {sources[ENTRY_MODULE][0]} needs the Python package(s) "
            f"{', '.join(map(repr, missing))}, not installed (the `nodes` extra installs them)"
        )


def _forget(names: list[str]) -> None:
    for name in names:
        sys.modules.pop(name, None)


def instantiate(module: types.ModuleType) -> nn.Module:
    """Build the snapshot's BiRefNet with random weights and no backbone download."""
    try:
        model_cls = getattr(module, CLASS_NAME)
        config_cls = getattr(module, CONFIG_CLASS_NAME)
    except AttributeError as exc:
        raise ModelFileError(f"BiRefNet code lacks {exc.name!r}") from exc
    # bb_pretrained=False everywhere: True would fetch ImageNet backbone weights.
    return model_cls(bb_pretrained=False, config=config_cls(bb_pretrained=False))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors state dict, every key matching (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())  # one line: torch lists keys over several
        raise ModelFileError(f"{path} does not fit the BiRefNet code: {detail}") from exc


def normalise(image: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in 0..1 -> ImageNet-normalised (BiRefNet's and U²-Net's own transform)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


def shrink(image: torch.Tensor, size: int) -> torch.Tensor:
    """Bx3xHxW in 0..1 -> Bx3xSIZExSIZE, antialiased (the models take a fixed square)."""
    return F.interpolate(
        image.clamp(0, 1), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


def final_logits(outputs: object, batch: int = 1) -> torch.Tensor:
    """BiRefNet returns its multi-scale predictions as a list; the last is full resolution."""
    logits = outputs[-1] if isinstance(outputs, list | tuple) and outputs else outputs
    if (
        not isinstance(logits, torch.Tensor)
        or logits.ndim != 4
        or tuple(logits.shape[:2]) != (batch, 1)
    ):
        raise InferenceError(f"BiRefNet returned an unexpected output (want {batch}x1xHxW logits)")
    return logits


def grow(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bx1xhxw probabilities -> BxHxW float32 in 0..1 at the images' own size."""
    resized = F.interpolate(
        probs.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[:, 0].clamp(0, 1)


@dataclass(frozen=True)
class SegmenterSpec:
    """What differs between segmentation models around the same resize-run-resize loop."""

    label: str  # in messages, e.g. "BiRefNet"
    size: int  # the model's square input side
    prepare: Callable[[torch.Tensor], torch.Tensor]  # Bx3xSxS in 0..1 -> the model's input
    probabilities: Callable[[object, int], torch.Tensor]  # output, batch -> Bx1xSxS in 0..1


def _birefnet_probabilities(outputs: object, batch: int) -> torch.Tensor:
    return torch.sigmoid(final_logits(outputs, batch).float())


BIREFNET = SegmenterSpec("BiRefNet", NATIVE_SIZE, normalise, _birefnet_probabilities)


class Segmenter:
    """Soft foreground masks from a loaded segmentation model (kept resident between prompts).

    A batch runs through the model as one forward pass of up to `max_batch` images (the model
    input is a fixed square, so every image of a batch costs the same). On out-of-memory the
    batch is retried one image at a time; only a single image that does not fit is an error.
    The masks stay on the model's device, for the post-processing that follows there.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], object],
        device: torch.device,
        dtype: torch.dtype,
        max_batch: int = 8,
        spec: SegmenterSpec = BIREFNET,
        runtime: str = "torch",
    ):
        self.model = model
        self.runtime = runtime  # what runs the model, for logs and benchmarks
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.spec = spec

    def predict(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """float BxHxWx3 in 0..1 (any device) -> float32 BxHxW in 0..1 on the model's device."""
        batch = torch.as_tensor(images)
        if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape:
            raise ValueError(f"expected a BxHxWx3 image batch, got shape {tuple(batch.shape)}")
        pixels = batch.to(device=self.device, dtype=torch.float32).permute(0, 3, 1, 2)
        chunks = [self._run_or_split(chunk) for chunk in pixels.split(self.max_batch)]
        return torch.cat(chunks)

    def _run_or_split(self, pixels: torch.Tensor) -> torch.Tensor:
        try:
            return self._run(pixels)
        except torch.OutOfMemoryError:
            release_memory()
            if len(pixels) == 1:
                raise self._out_of_memory(pixels) from None
            log.warning(
                "%s ran out of memory on a batch of %d; one image at a time",
                self.spec.label,
                len(pixels),
            )
        masks = []
        for one in pixels.split(1):
            try:
                masks.append(self._run(one))
            except torch.OutOfMemoryError:
                release_memory()
                # The model input is a fixed square: tiling cannot help, so fail this
                # prompt with a clear error and leave ComfyUI running.
                raise self._out_of_memory(one) from None
        return torch.cat(masks)

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[2:]
        spec = self.spec
        with torch.inference_mode():
            outputs = self.model(spec.prepare(shrink(pixels, spec.size)).to(self.dtype))
            return grow(spec.probabilities(outputs, len(pixels)), height, width)

    def _out_of_memory(self, pixels: torch.Tensor) -> InferenceError:
        height, width = pixels.shape[2:]
        size = self.spec.size
        return InferenceError(
            f"{self.spec.label} ran out of memory on {self.device} "
            f"({width}x{height} image, model at {size}x{size})"
        )


def load_segmenter(
    models_dir: Path, lock_path: Path, verify_sha256: bool, device: torch.device
) -> Segmenter:
    """Check the pinned snapshot's files, run its code, load its weights onto `device`."""
    files = read_model_files(lock_path, MODEL_NAME)
    paths = resolve_files(models_dir, files, verify_sha256)
    code = [f for f in files if f.role == "code"]
    weights = [f for f in files if f.role == "weights"]
    if not code or len(weights) != 1:
        raise ModelFileError(f"models.lock must list {MODEL_NAME}'s code and one weights file")
    sources = {_stem(f): (paths[f.name], read_verified(paths[f.name], f)) for f in code}
    package = (
        "_simplypng_birefnet_"
        + sha256_bytes("".join(sorted(f.sha256 or "" for f in code)).encode())[:16]
    )
    force_offline()  # before the snapshot's imports reach transformers / huggingface_hub
    module = import_snapshot(package, sources)
    model = instantiate(module)
    load_weights(model, paths[weights[0].name])
    dtype = dtype_for(device, "fp16")
    model = model.eval().to(device=device, dtype=dtype)
    log.info("loaded %s on %s as %s", MODEL_NAME, device, dtype)
    return Segmenter(model, device, dtype)


def _stem(file: ModelFile) -> str:
    return Path(file.dest).stem
