"""Node emulations and ComfyUI module shims for the ComfyUI test double (tests only).

Small stand-ins, in ComfyUI's V1 node format, for the core nodes the project's workflows use,
plus minimal `folder_paths`, `comfy.model_management` and `comfy.utils` modules for node packs
loaded into the double. Node code finds the double it runs in (its folders, the interrupt flag,
progress reporting) through a context variable set by the double. NOT ComfyUI.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib.util
import logging
import os
import random
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("comfy_double")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


class InterruptProcessingException(Exception):
    """Raised in a node when its prompt was interrupted (comfy.model_management's name)."""


class DoubleHost(Protocol):
    """What node code needs from the double it runs in."""

    input_dir: Path
    output_dir: Path
    temp_dir: Path
    models_dir: Path

    @property
    def interrupt_requested(self) -> bool: ...

    def input_path(self, name: str) -> Path: ...

    def input_images(self) -> list[str]: ...

    def model_files(self, folder_name: str) -> list[str]: ...

    def check_interrupt(self) -> None: ...

    def report_progress(
        self, run: Any, node_id: str, value: float, total: float, preview: Any
    ) -> None: ...


@dataclass
class _NodeContext:
    double: DoubleHost
    run: Any = None
    node_id: str | None = None


_CONTEXT: contextvars.ContextVar[_NodeContext | None] = contextvars.ContextVar(
    "comfy_double_context", default=None
)


@contextlib.contextmanager
def running_in(double: DoubleHost, run: Any = None, node_id: str | None = None) -> Iterator[None]:
    """Make `double` (and the running node, if any) what node code and the shims see."""
    token = _CONTEXT.set(_NodeContext(double, run, node_id))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_double() -> DoubleHost:
    ctx = _CONTEXT.get()
    if ctx is None:
        raise RuntimeError("no ComfyUI double is active in this context")
    return ctx.double


def _progress_hook(value: float, total: float, preview: Any = None, node_id: str | None = None):
    ctx = _CONTEXT.get()
    if ctx is None or ctx.run is None:
        return
    ctx.double.check_interrupt()
    ctx.double.report_progress(ctx.run, node_id or ctx.node_id or "", value, total, preview)


class ProgressBar:
    """Stand-in for comfy.utils.ProgressBar: sends `progress` frames for the running node."""

    def __init__(self, total: float, node_id: str | None = None):
        self.total: float = total
        self.current: float = 0
        self.node_id = node_id

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        _progress_hook(self.current, self.total, preview, self.node_id)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)


# --------------------------------------------------------------------------------------------
# Shims for node packs: minimal `folder_paths`, `comfy.model_management` and `comfy.utils`.
# Registered in sys.modules only while a double with node packs is alive, and only when no
# real ComfyUI is importable, so that code testing "outside ComfyUI" paths is unaffected.


def _load_torch_file(path: str, safe_load: bool = True, device: Any = None) -> dict[str, Any]:
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _common_upscale(samples: Any, width: int, height: int, method: str, crop: str) -> Any:
    """comfy.utils.common_upscale on BxCxHxW tensors (lanczos through Pillow, as ComfyUI)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    if crop == "center":
        old_w, old_h = samples.shape[3], samples.shape[2]
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        samples = samples.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
    if method == "lanczos":
        out = []
        for image in samples.movedim(1, -1):
            array = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            pil = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
            pil = pil.resize((width, height), resample=Image.Resampling.LANCZOS)
            resized = torch.from_numpy(np.array(pil).astype(np.float32) / 255.0)
            out.append(resized.unsqueeze(-1) if resized.ndim == 2 else resized)
        return torch.stack(out).movedim(-1, 1)
    return F.interpolate(samples, size=(height, width), mode=method)


SHIM_NAMES = ("folder_paths", "comfy", "comfy.model_management", "comfy.utils")
_shim_lock = threading.Lock()
_shim_users = 0


def acquire_comfy_shims() -> bool:
    """Register the shims (reference counted); False when a real ComfyUI is importable."""
    global _shim_users
    with _shim_lock:
        if _shim_users == 0:
            if "folder_paths" in sys.modules or importlib.util.find_spec("folder_paths"):
                return False
            sys.modules.update(_build_shims())
        _shim_users += 1
        return True


def release_comfy_shims() -> None:
    global _shim_users
    with _shim_lock:
        _shim_users -= 1
        if _shim_users == 0:
            for name in SHIM_NAMES:
                module = sys.modules.get(name)
                if module is not None and getattr(module, "COMFY_DOUBLE_SHIM", False):
                    del sys.modules[name]


def _build_shims() -> dict[str, types.ModuleType]:
    def models_dir() -> str:
        return str(current_double().models_dir)

    def get_folder_paths(folder_name: str) -> list[str]:
        return [os.path.join(models_dir(), folder_name)]

    def get_filename_list(folder_name: str) -> list[str]:
        return current_double().model_files(folder_name)

    def get_full_path(folder_name: str, filename: str) -> str | None:
        path = os.path.join(models_dir(), folder_name, filename)
        return path if os.path.isfile(path) else None

    def get_full_path_or_raise(folder_name: str, filename: str) -> str:
        path = get_full_path(folder_name, filename)
        if path is None:
            raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}'")
        return path

    def get_save_image_path(
        prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0
    ) -> tuple[str, str, int, str, str]:
        folder, stem, counter, subfolder = _save_path(prefix, Path(output_dir))
        return str(folder), stem, counter, subfolder, prefix

    folder_paths = types.ModuleType("folder_paths", "ComfyDouble shim of ComfyUI's folder_paths.")
    folder_paths.__dict__.update(
        get_input_directory=lambda: str(current_double().input_dir),
        get_output_directory=lambda: str(current_double().output_dir),
        get_temp_directory=lambda: str(current_double().temp_dir),
        get_annotated_filepath=lambda name: str(current_double().input_path(name)),
        exists_annotated_filepath=lambda name: current_double().input_path(name).is_file(),
        get_folder_paths=get_folder_paths,
        get_filename_list=get_filename_list,
        get_full_path=get_full_path,
        get_full_path_or_raise=get_full_path_or_raise,
        get_save_image_path=get_save_image_path,
        add_model_folder_path=lambda *args, **kwargs: None,
        folder_names_and_paths={},
        supported_pt_extensions=set(MODEL_EXTENSIONS),
        __getattr__=lambda name: models_dir() if name == "models_dir" else _no_attr(name),
    )

    comfy = types.ModuleType("comfy", "ComfyDouble shim package standing in for ComfyUI's comfy.")
    comfy.__path__ = []  # a package, so `import comfy.utils` resolves to the shims below
    management = types.ModuleType("comfy.model_management", "ComfyDouble shim.")

    def throw_exception_if_processing_interrupted() -> None:
        ctx = _CONTEXT.get()
        if ctx is not None:
            ctx.double.check_interrupt()

    def processing_interrupted() -> bool:
        ctx = _CONTEXT.get()
        return ctx is not None and ctx.double.interrupt_requested

    def cpu() -> Any:
        import torch

        return torch.device("cpu")

    management.__dict__.update(
        InterruptProcessingException=InterruptProcessingException,
        throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted,
        processing_interrupted=processing_interrupted,
        get_torch_device=cpu,
        intermediate_device=cpu,
        unet_offload_device=cpu,
        text_encoder_device=cpu,
        soft_empty_cache=lambda *args, **kwargs: None,
        free_memory=lambda *args, **kwargs: None,
        load_models_gpu=lambda *args, **kwargs: None,
        get_free_memory=lambda *args, **kwargs: 8 * 1024**3,
        module_size=lambda module: 0,
        OOM_EXCEPTION=MemoryError,
    )
    utils = types.ModuleType("comfy.utils", "ComfyDouble shim.")
    utils.__dict__.update(
        ProgressBar=ProgressBar,
        load_torch_file=_load_torch_file,
        common_upscale=_common_upscale,
    )
    comfy.model_management = management  # type: ignore[attr-defined]
    comfy.utils = utils  # type: ignore[attr-defined]
    modules = (folder_paths, comfy, management, utils)
    for module in modules:
        module.COMFY_DOUBLE_SHIM = True  # type: ignore[attr-defined]
    return dict(zip(SHIM_NAMES, modules, strict=True))


def _no_attr(name: str) -> Any:
    raise AttributeError(name)


def load_node_pack(path: Path) -> dict[str, type]:
    """Import a node pack folder as ComfyUI does: its __init__.py's NODE_CLASS_MAPPINGS.

    As in ComfyUI an import failure is only logged; the pack's nodes are then simply missing.
    Call with the shims acquired and the double bound (running_in) if the pack needs them.
    """
    init = Path(path) / "__init__.py"
    name = Path(path).name
    try:
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(path)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"no package at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return dict(module.NODE_CLASS_MAPPINGS)
    except Exception:
        sys.modules.pop(name, None)
        log.exception("Cannot import %s module for custom nodes", path)
        return {}


# --------------------------------------------------------------------------------------------
# Core node emulations, in ComfyUI's V1 node format. IMAGE: float32 BxHxWxC in 0..1;
# MASK: float32 BxHxW (1 = masked, i.e. transparent for LoadImage).


def _save_path(prefix: str, output_dir: Path) -> tuple[Path, str, int, str]:
    """folder_paths.get_save_image_path: folder, file stem, next counter, subfolder."""
    subfolder = os.path.dirname(os.path.normpath(prefix))
    stem = os.path.basename(os.path.normpath(prefix))
    folder = (output_dir / subfolder).resolve()
    if os.path.commonpath((output_dir, folder)) != str(output_dir):
        raise Exception("Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)

    def numbered(name: str) -> tuple[int, str]:
        try:
            digits = int(name[len(stem) + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        return digits, name[: len(stem) + 1]

    counters = [
        digits
        for digits, prefix in map(numbered, os.listdir(folder))
        if os.path.normcase(prefix[:-1]) == os.path.normcase(stem) and prefix[-1:] == "_"
    ]
    return folder, stem, max(counters, default=0) + 1, subfolder


def _to_pil(image: Any) -> Any:
    import numpy as np
    from PIL import Image

    array = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
    return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (current_double().input_images(), {"image_upload": True})}}

    def load_image(self, image):
        import numpy as np
        import torch
        from PIL import Image, ImageOps

        with Image.open(current_double().input_path(image)) as opened:
            frame = ImageOps.exif_transpose(opened)
            if frame.mode == "I":
                frame = frame.point(lambda value: value * (1 / 255))
            rgb = torch.from_numpy(np.array(frame.convert("RGB")).astype(np.float32) / 255.0)
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32)  # ComfyUI's placeholder
        return (rgb[None,], mask.unsqueeze(0))

    @classmethod
    def IS_CHANGED(cls, image):
        return hashlib.sha256(current_double().input_path(image).read_bytes()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not current_double().input_path(image).is_file():
            return f"Invalid image file: {image}"
        return True


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    _type = "output"
    _compress_level = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def _folder(self) -> Path:
        return current_double().output_dir

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        folder, stem, counter, subfolder = _save_path(filename_prefix, self._folder())
        results = []
        for image in images:
            # The double always behaves as if started with --disable-metadata: no tEXt chunks.
            name = f"{stem}_{counter:05}_.png"
            _to_pil(image).save(folder / name, compress_level=self._compress_level)
            results.append({"filename": name, "subfolder": subfolder, "type": self._type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    _type = "temp"
    _compress_level = 1

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def _folder(self) -> Path:
        return current_double().temp_dir

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        suffix = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
        return super().save_images(images, f"ComfyUI_temp_{suffix}")


class SaveImageWebsocket:
    """Sends each image as a binary preview frame instead of writing a file."""

    CATEGORY = "api node/image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images):
        bar = ProgressBar(images.shape[0])
        for step, image in enumerate(images):
            bar.update_absolute(step, images.shape[0], ("PNG", _to_pil(image), None))
        return {}


class EmptyImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 1, "max": 16384, "step": 1}
        return {
            "required": {
                "width": ("INT", size),
                "height": ("INT", size),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1}),
            }
        }

    def generate(self, width, height, batch_size=1, color=0):
        import torch

        channels = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
        planes = [torch.full([batch_size, height, width, 1], value) for value in channels]
        return (torch.cat(planes, dim=-1),)


class ImageScale:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 0, "max": 16384, "step": 1}
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "width": ("INT", size),
                "height": ("INT", size),
                "crop": (["disabled", "center"],),
            }
        }

    def upscale(self, image, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (image,)
        if width == 0:
            width = max(1, round(image.shape[2] * height / image.shape[1]))
        elif height == 0:
            height = max(1, round(image.shape[1] * width / image.shape[2]))
        samples = _common_upscale(image.movedim(-1, 1), width, height, upscale_method, crop)
        return (samples.movedim(1, -1),)


class ImageScaleBy:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        scale = {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (UPSCALE_METHODS,),
                "scale_by": ("FLOAT", scale),
            }
        }

    def upscale(self, image, upscale_method, scale_by):
        width, height = round(image.shape[2] * scale_by), round(image.shape[1] * scale_by)
        samples = _common_upscale(image.movedim(-1, 1), width, height, upscale_method, "disabled")
        return (samples.movedim(1, -1),)


class ImageToMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    _channels = ("red", "green", "blue", "alpha")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "channel": (list(cls._channels),)}}

    def image_to_mask(self, image, channel):
        return (image[:, :, :, self._channels.index(channel)],)


class MaskToImage:
    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask):
        planes = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1)
        return (planes.expand(-1, -1, -1, 3),)


class SolidMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 1, "max": 16384, "step": 1}
        return {
            "required": {
                "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "width": ("INT", size),
                "height": ("INT", size),
            }
        }

    def solid(self, value, width, height):
        import torch

        return (torch.full((1, height, width), value, dtype=torch.float32),)


class InvertMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask):
        return (1.0 - mask,)


class GrowMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mask": ("MASK",),
                "expand": ("INT", {"default": 0, "min": -16384, "max": 16384, "step": 1}),
                "tapered_corners": ("BOOLEAN", {"default": True}),
            }
        }

    def expand_mask(self, mask, expand, tapered_corners):
        import numpy as np
        import scipy.ndimage
        import torch

        corner = 0 if tapered_corners else 1
        kernel = np.array([[corner, 1, corner], [1, 1, 1], [corner, 1, corner]])
        out = []
        for plane in mask.reshape((-1, mask.shape[-2], mask.shape[-1])):
            array = plane.numpy()
            for _ in range(abs(expand)):
                grow = scipy.ndimage.grey_dilation if expand > 0 else scipy.ndimage.grey_erosion
                array = grow(array, footprint=kernel)
            out.append(torch.from_numpy(array))
        return (torch.stack(out, dim=0),)


class SplitImageWithAlpha:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "split"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    def split(self, image):
        import torch

        rgb = [i[:, :, :3] for i in image]
        alpha = [i[:, :, 3] if i.shape[2] > 3 else torch.ones_like(i[:, :, 0]) for i in image]
        return (torch.stack(rgb), 1.0 - torch.stack(alpha))


class JoinImageWithAlpha:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "join"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}), "alpha": ("MASK", {})}}

    def join(self, image, alpha):
        import torch
        import torch.nn.functional as F

        planes = alpha.reshape((-1, 1, alpha.shape[-2], alpha.shape[-1]))
        resized = F.interpolate(planes, size=tuple(image.shape[1:3]), mode="bilinear")
        opacity = 1.0 - resized.squeeze(1)
        count = min(len(image), len(opacity))
        joined = [
            torch.cat((image[i][:, :, :3], opacity[i].unsqueeze(2)), dim=2) for i in range(count)
        ]
        return (torch.stack(joined),)


class UpscaleModelLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"

    @classmethod
    def INPUT_TYPES(cls):
        # The newer node-schema encoding, as this node has in ComfyUI 0.3.64.
        options = current_double().model_files("upscale_models")
        return {"required": {"model_name": ("COMBO", {"multiselect": False, "options": options})}}

    def load_model(self, model_name):
        from spandrel import ImageModelDescriptor, ModelLoader

        path = current_double().models_dir / "upscale_models" / model_name
        if not path.is_file():
            raise FileNotFoundError(
                f"Model in folder 'upscale_models' with filename '{model_name}' not found."
            )
        model = ModelLoader().load_from_state_dict(_load_torch_file(str(path))).eval()
        if not isinstance(model, ImageModelDescriptor):
            raise Exception("Upscale model must be a single-image model.")
        return (model,)


class ImageUpscaleWithModel:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL", {}), "image": ("IMAGE", {})}}

    def upscale(self, upscale_model, image):
        import torch

        # ComfyUI tiles at 512 px; the double runs the whole (small) test image at once.
        bar = ProgressBar(image.shape[0])
        out = []
        with torch.inference_mode():
            for index in range(image.shape[0]):
                out.append(upscale_model(image[index : index + 1].movedim(-1, -3)))
                bar.update_absolute(index + 1)
        upscaled = torch.clamp(torch.cat(out).movedim(-3, -1), min=0.0, max=1.0)
        return (upscaled.clone(),)


CORE_NODES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        LoadImage,
        SaveImage,
        PreviewImage,
        SaveImageWebsocket,
        EmptyImage,
        ImageScale,
        ImageScaleBy,
        ImageToMask,
        MaskToImage,
        SolidMask,
        InvertMask,
        GrowMask,
        SplitImageWithAlpha,
        JoinImageWithAlpha,
        UpscaleModelLoader,
        ImageUpscaleWithModel,
    )
}
