"""Models with random weights in the real file formats, for tests that load them for real.

- build_birefnet_standin: a BiRefNet snapshot folder (birefnet.py + BiRefNet_config.py +
  model.safetensors) whose code keeps the real snapshot's contract: class BiRefNet(bb_pretrained,
  config), a relative import of BiRefNetConfig, and in eval mode a forward returning a
  one-element list holding Bx1xHxW logits at the input's full resolution. Its state dict keeps
  int64 buffers (Swin's relative_position_index, BatchNorm's num_batches_tracked) beside the
  floats, and the file stores those int64 and the floats fp16, as the pinned snapshot does. It
  is loaded through the production loader. With hub_classes=True the classes subclass
  transformers' PreTrainedModel / PretrainedConfig and use the real file's third-party imports
  (timm, kornia, einops, torchvision), as the pinned code does.
- build_big_lama: a FULL-SIZE LaMa state dict (spandrel's architecture, 51 M parameters) saved
  with the original training checkpoint's "generator." key prefix, which spandrel detects.
- build_tiny_esrgan: an RRDBNet in the basicsr key layout Real-ESRGAN ships ({"params_ema": ...})
  that spandrel (and so ComfyUI's UpscaleModelLoader) detects as ESRGAN.
- lock_entry / write_lock: a models.lock describing the files just built, hashed for real.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path

import torch


def swin_relative_position_index(window: int) -> torch.Tensor:
    """Swin's relative_position_index buffer (int64, window**2 x window**2): for each pair of
    cells of a window, the row of the relative-position bias table that holds their offset."""
    grid = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack(grid).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


BIREFNET_WINDOW = 2  # the stand-in's Swin-like window (the real Swin-L uses 12)

BIREFNET_CONFIG_PY = '''\
"""Stand-in for the snapshot's BiRefNet_config.py (the real one subclasses PretrainedConfig)."""


class BiRefNetConfig:
    def __init__(self, bb_pretrained=False, **kwargs):
        self.bb_pretrained = bb_pretrained
'''

# Shared by both variants: a Swin-like window step that indexes its float bias table with the
# int64 relative_position_index buffer, as Swin's attention does (a float index fails there).
_BIREFNET_WINDOW_PY = (
    inspect.getsource(swin_relative_position_index)
    + f'''

class WindowMix(nn.Module):
    """Mixes the cells of each {BIREFNET_WINDOW}x{BIREFNET_WINDOW} window by a softmax of
    Swin's relative-position bias."""

    def __init__(self, window={BIREFNET_WINDOW}):
        super().__init__()
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, 1))
        self.register_buffer("relative_position_index", swin_relative_position_index(window))

    def forward(self, x):
        w = self.window
        cells = w * w
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        weights = torch.softmax(bias.view(cells, cells), dim=-1).to(x.dtype)
        x = F.pad(x, (0, -x.shape[3] % w, 0, -x.shape[2] % w))
        b, c, h, wd = x.shape
        windows = x.view(b, c, h // w, w, wd // w, w).permute(0, 1, 2, 4, 3, 5)
        mixed = windows.reshape(b, c, h // w, wd // w, cells) @ weights.T
        return mixed.view(b, c, h // w, wd // w, w, w).permute(0, 1, 2, 4, 3, 5).reshape(x.shape)
'''
)

# The real forward ends `return [scaled_preds, class_preds_lst] if self.training else
# scaled_preds`, where scaled_preds in eval is [full-resolution logits].
BIREFNET_PY = (
    '''\
"""Stand-in for the snapshot's birefnet.py: same class name, constructor and forward contract."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .BiRefNet_config import BiRefNetConfig


'''
    + _BIREFNET_WINDOW_PY
    + """

class BiRefNet(nn.Module):
    def __init__(self, bb_pretrained=True, config=BiRefNetConfig()):
        super().__init__()
        if config.bb_pretrained:
            raise RuntimeError("would download backbone weights")
        self.coarse = nn.Conv2d(3, 4, kernel_size=3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.mix = WindowMix()
        self.to_coarse = nn.Conv2d(4, 1, kernel_size=1)
        self.head = nn.Conv2d(3, 1, kernel_size=1)

    def forward(self, x):
        coarse = self.to_coarse(self.mix(torch.relu(self.bn(self.coarse(x)))))
        coarse = F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=False)
        scaled_preds = [self.head(x) + coarse]
        return [scaled_preds, [None]] if self.training else scaled_preds
"""
)


# The same contract on the real snapshot's base classes and third-party imports (transformers,
# timm, kornia, einops, torchvision): loading it proves that the pinned versions of those
# packages work with the loader's build-then-load-strict path, which the real code also takes.
BIREFNET_HUB_CONFIG_PY = '''\
"""Stand-in for BiRefNet_config.py on transformers' PretrainedConfig, as the real one is."""

from transformers import PretrainedConfig


class BiRefNetConfig(PretrainedConfig):
    model_type = "SegformerForSemanticSegmentation"

    def __init__(self, bb_pretrained=False, **kwargs):
        self.bb_pretrained = bb_pretrained
        super().__init__(**kwargs)
'''

BIREFNET_HUB_PY = (
    '''\
"""Stand-in for birefnet.py: a PreTrainedModel using the real file's third-party imports."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from kornia.filters import laplacian
from timm.models.layers import DropPath, trunc_normal_
from timm.models.registry import register_model  # imported, as in the real file
from torchvision.ops import deform_conv2d  # the real decoder's deformable convolution
from transformers import PreTrainedModel

from .BiRefNet_config import BiRefNetConfig


class Settings:
    """The real model swaps its transformers config for a plain settings object."""

    size = 1024


'''
    + _BIREFNET_WINDOW_PY
    + """

class BiRefNet(PreTrainedModel):
    config_class = BiRefNetConfig

    def __init__(self, bb_pretrained=True, config=BiRefNetConfig()):
        super().__init__(config)
        if config.bb_pretrained:
            raise RuntimeError("would download backbone weights")
        self.config = Settings()
        self.coarse = nn.Conv2d(3, 4, kernel_size=3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.mix = WindowMix()
        self.to_coarse = nn.Conv2d(4, 1, kernel_size=1)
        self.head = nn.Conv2d(3, 1, kernel_size=1)
        self.drop = DropPath(0.1)  # identity in eval, as in the real backbone
        trunc_normal_(self.head.weight, std=0.02)

    def forward(self, x):
        coarse = self.to_coarse(self.mix(torch.relu(self.bn(self.coarse(x)))))
        coarse = coarse + 0 * laplacian(coarse, kernel_size=5)
        coarse = F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=False)
        patches = rearrange(x, "b c (hg h) (wg w) -> (b hg wg) c h w", hg=2, wg=2)
        whole = rearrange(patches, "(b hg wg) c h w -> b c (hg h) (wg w)", hg=2, wg=2)
        scaled_preds = [self.head(self.drop(whole)) + coarse]
        return [scaled_preds, [None]] if self.training else scaled_preds
"""
)


def _random_state(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=generator) * 0.1 for k, s in shapes.items()}


BIREFNET_SHAPES = {  # the floating-point tensors; _birefnet_state adds the rest
    "coarse.weight": (4, 3, 3, 3),
    "coarse.bias": (4,),
    "bn.weight": (4,),
    "bn.bias": (4,),
    "bn.running_mean": (4,),
    "mix.relative_position_bias_table": ((2 * BIREFNET_WINDOW - 1) ** 2, 1),
    "to_coarse.weight": (1, 4, 1, 1),
    "to_coarse.bias": (1,),
    "head.weight": (1, 3, 1, 1),
    "head.bias": (1,),
}
# The int64 buffers, as in the real state dict (67 of them there: every Swin block's
# relative_position_index and every BatchNorm's num_batches_tracked).
BIREFNET_INT64_KEYS = ("mix.relative_position_index", "bn.num_batches_tracked")


def _birefnet_state(seed: int) -> dict[str, torch.Tensor]:
    state = _random_state(BIREFNET_SHAPES, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    state["bn.running_var"] = 0.5 + torch.rand(4, generator=generator)  # a variance: positive
    state["bn.num_batches_tracked"] = torch.tensor(123_457)  # above fp16's range, like a real count
    state["mix.relative_position_index"] = swin_relative_position_index(BIREFNET_WINDOW)
    return state


def build_birefnet_standin(
    folder: Path,
    overrides: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    hub_classes: bool = False,
) -> dict[str, Path]:
    """Write the stand-in snapshot into `folder`; returns {file name: path}.

    `overrides` replaces tensors of the random state dict, e.g. a known "head" so a test can
    predict the mask. As in the pinned snapshot, floating-point tensors are stored as float16
    and the int64 buffers (BIREFNET_INT64_KEYS) as int64.
    `hub_classes` writes the variant built on transformers with the real file's imports
    (slower to import: a few seconds for transformers, timm and kornia).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config_py, model_py = (
        (BIREFNET_HUB_CONFIG_PY, BIREFNET_HUB_PY)
        if hub_classes
        else (BIREFNET_CONFIG_PY, BIREFNET_PY)
    )
    (folder / "BiRefNet_config.py").write_text(config_py, encoding="utf-8")
    (folder / "birefnet.py").write_text(model_py, encoding="utf-8")
    state = _birefnet_state(seed)
    state.update(overrides or {})
    save_file(
        {
            k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            for k, v in state.items()
        },
        str(folder / "model.safetensors"),
    )
    return {
        name: folder / name for name in ("birefnet.py", "BiRefNet_config.py", "model.safetensors")
    }


def build_big_lama(path: Path, seed: int = 0) -> Path:
    """A full-size random big-LaMa state dict at `path` (.pt pickle or .safetensors)."""
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(seed)
    model = LaMa(in_nc=4, out_nc=3)  # big-LaMa: RGB + mask in, RGB out
    # LaMa's own checkpoints name the generator "generator.model..."; spandrel maps it.
    state = {
        "generator." + key.removeprefix("model."): value.contiguous()
        for key, value in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _esrgan_shapes(scale: int, num_feat: int, num_block: int, grow: int):
    in_ch = {4: 3, 2: 12, 1: 48}[scale]  # basicsr pixel-unshuffles x2/x1 inputs
    shapes: dict[str, tuple[int, ...]] = {
        "conv_first.weight": (num_feat, in_ch, 3, 3),
        "conv_first.bias": (num_feat,),
    }
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                out = num_feat if conv == 5 else grow
                key = f"body.{block}.rdb{rdb}.conv{conv}"
                shapes[f"{key}.weight"] = (out, num_feat + (conv - 1) * grow, 3, 3)
                shapes[f"{key}.bias"] = (out,)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[f"{name}.weight"] = (num_feat, num_feat, 3, 3)
        shapes[f"{name}.bias"] = (num_feat,)
    shapes["conv_last.weight"] = (3, num_feat, 3, 3)
    shapes["conv_last.bias"] = (3,)
    return shapes


def esrgan_state_dict(
    scale: int = 4, num_feat: int = 8, num_block: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random RRDBNet state dict in basicsr's key layout (growth channels 32, as spandrel
    assumes). num_feat=64, num_block=23 is RealESRGAN_x4plus's real size."""
    if scale not in (1, 2, 4):
        raise ValueError("basicsr RRDBNet scales are 1, 2 or 4")
    return _random_state(_esrgan_shapes(scale, num_feat, num_block, grow=32), seed)


def build_tiny_esrgan(path: Path, scale: int = 4, num_feat: int = 8, num_block: int = 1) -> Path:
    """A tiny Real-ESRGAN-format model file that spandrel loads as ESRGAN at `scale`.

    .pth/.pt files are wrapped as {"params_ema": state_dict} like the real releases;
    .safetensors files hold the bare state dict.
    """
    state = {k: v.contiguous() for k, v in esrgan_state_dict(scale, num_feat, num_block).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def lock_entry(
    path: Path,
    *,
    model: str,
    dest: str,
    role: str = "weights",
    tasks: tuple[str, ...] = ("bg_remove",),
    url: str | None = None,
    licence: str = "MIT",
) -> dict[str, object]:
    """A models.lock entry for a file that exists, with its real size and sha256."""
    name = f"{model}/{Path(dest).name}"
    return {
        "name": name,
        "model": model,
        "role": role,
        "tasks": list(tasks),
        "version": f"test/{model}@0",
        "url": url or f"https://github.com/test/{model}/releases/download/v0/{Path(dest).name}",
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "licence": licence,
        "licence_url": "https://example.invalid/LICENSE",
        "dest": dest,
    }


def birefnet_lock_entries(models_dir: Path, folder: str = "birefnet/birefnet-general"):
    """Entries for a stand-in snapshot already built at models_dir/folder."""
    roles = {"birefnet.py": "code", "BiRefNet_config.py": "code", "model.safetensors": "weights"}
    return [
        lock_entry(
            models_dir / folder / name, model="birefnet-general", dest=f"{folder}/{name}", role=role
        )
        for name, role in roles.items()
    ]


def write_lock(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"lock_version": 1, "models": entries}, indent=2), encoding="utf-8")
    return path
