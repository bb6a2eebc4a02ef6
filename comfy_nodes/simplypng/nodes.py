"""SimplyPNG ComfyUI nodes: thin wrappers over the torch operations in `ops`.

ComfyUI passes IMAGE as float tensors BxHxWxC in 0..1 (C=4 carries straight alpha) and MASK as
BxHxW. Each node moves its inputs to the compute device (the model's: ComfyUI's device, CUDA
when present), loops over the batch (a batch of one image or mask is broadcast against the
other input's batch) and returns its result on that device, so a chain of our nodes after a
model never copies pixels back to the host; the raw save node converts to 8-bit there too.
Mask conventions: a subject mask is the subject's coverage (1 = subject); a removal mask is 1
where pixels are repainted; an input named `transparency` is ComfyUI's LoadImage MASK output,
1 - alpha (1 = transparent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from .ops.alpha import fill_transparent, snap_alpha
from .ops.colour_key import colour_key
from .ops.cutout import cutout
from .ops.ecomm import white_background
from .ops.errors import InvalidRegionsError
from .ops.inpaint import DEFAULT_CONTEXT, remove_objects
from .ops.masks import mask_from_image, parse_regions, regions_mask
from .ops.matting import SEGMENTER_RESOLUTION, guide_params, refine_matte
from .ops.regions import dilate as dilate_mask
from .ops.resize import needs_model, resize, resize_long_edge
from .ops.shadow import add_shadow
from .widgets import (
    InputTypes,
    bool_input,
    combo,
    float_input,
    int_input,
    link,
    string_input,
)

logger = logging.getLogger(__name__)

CATEGORY = "SimplyPNG"
_RGBA_CUTOUT = "RGBA cutout (from SimplyPNG Refine Matte)."
_TRANSPARENCY = "LoadImage's MASK (1 - alpha)."


# Model access. Imported on first use so that loading the pack (ComfyUI start-up, /object_info)
# never touches model code or weights. Node tests replace these two functions with stubs.
def _get_segmenter(name: str) -> Any:
    from .models.registry import get_segmenter

    return get_segmenter(name)


def _get_inpainter() -> Any:
    from .models.registry import get_inpainter

    return get_inpainter()


def torch_device() -> torch.device:
    """The compute device: ComfyUI's (it honours --cpu), else CUDA when present, else CPU."""
    from .models.device import torch_device as device

    return device()


# --- batches on the device --------------------------------------------------------------------


def _on_device(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device=torch_device(), dtype=torch.float32)


def _batch_size(*batches: torch.Tensor | None) -> int:
    """Common batch size; a batch of one is broadcast, any other mismatch is an error."""
    sizes = {len(b) for b in batches if b is not None}
    size = max(sizes)
    if sizes - {1, size}:
        raise ValueError(f"SimplyPNG: batch sizes {sorted(sizes)} cannot be broadcast together")
    return size


def _item(batch: torch.Tensor, index: int) -> torch.Tensor:
    return batch[index if len(batch) > 1 else 0]


def _fit(plane: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A mask plane at the image's size (LoadImage gives a 64x64 placeholder, for instance)."""
    if tuple(plane.shape) == (height, width):
        return plane
    return resize(plane, (width, height), "bilinear").clamp_(0.0, 1.0)


def _split_alpha(
    image: torch.Tensor, transparency: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGB and alpha of one image; alpha is None when the image is fully opaque."""
    height, width = image.shape[:2]
    if image.shape[2] == 4:
        alpha = image[..., 3]
    elif transparency is not None:
        alpha = 1.0 - _fit(transparency, height, width)
    else:
        return image[..., :3], None
    return image[..., :3], (None if bool((alpha >= 1.0).all()) else alpha)


def _rgba(image: torch.Tensor) -> torch.Tensor:
    """RGBA view of an image; RGB counts as opaque."""
    if image.shape[2] == 4:
        return image
    opaque = torch.ones((*image.shape[:2], 1), dtype=image.dtype, device=image.device)
    return torch.cat([image[..., :3], opaque], dim=-1)


def _map(fn: Callable[..., torch.Tensor], *batches: torch.Tensor | None) -> list[torch.Tensor]:
    """Apply fn to every item of the broadcast batches, on the device (None stays None)."""
    moved = [_on_device(b) for b in batches]
    size = _batch_size(*moved)
    return [fn(*(None if b is None else _item(b, i) for b in moved)) for i in range(size)]


def _per_image(fn: Callable[..., torch.Tensor], *batches: torch.Tensor | None) -> torch.Tensor:
    """`_map` stacked back into one batch tensor."""
    return torch.stack(_map(fn, *batches))


# --- nodes ----------------------------------------------------------------------------------


class _Node:
    """Class attributes shared by every node; ComfyUI reads them (inherited or not) off the class."""

    CATEGORY = CATEGORY
    FUNCTION = "run"


class _ImageNode(_Node):
    RETURN_TYPES: tuple[str, ...] = ("IMAGE",)
    RETURN_NAMES: tuple[str, ...] = ("image",)


class _MaskNode(_Node):
    RETURN_TYPES: tuple[str, ...] = ("MASK",)
    RETURN_NAMES: tuple[str, ...] = ("mask",)


SEGMENTER_NAMES = ["birefnet", "u2netp"]  # models/registry.py SEGMENTERS, without importing it


class SimplyPNGSegment(_Node):
    """Subject mask from a segmenter (BiRefNet, or the lite u2netp), at the image's own size,
    and the resolution the model saw (the Matte node sizes its edge refinement by it)."""

    RETURN_TYPES = ("MASK", "INT")
    RETURN_NAMES = ("mask", "resolution")

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE"),
                "model": combo(
                    SEGMENTER_NAMES,
                    "birefnet",
                    tooltip="birefnet: best edges (1024², GPU). u2netp: lite and fast (320²).",
                ),
            }
        }

    def run(self, image: torch.Tensor, model: str = "birefnet") -> tuple[torch.Tensor, int]:
        # The whole batch goes to the model at once; the masks stay on its device.
        segmenter = _get_segmenter(model)
        masks = torch.as_tensor(segmenter.predict(image[..., :3])).to(torch.float32)
        if masks.shape != image.shape[:3]:
            raise RuntimeError(
                f"segmenter returned masks of shape {tuple(masks.shape)}, "
                f"expected {tuple(image.shape[:3])}"
            )
        return masks.clamp(0.0, 1.0), int(segmenter.spec.size)


class SimplyPNGMatte(_ImageNode):
    """Straight-alpha RGBA cutout: the mask refined onto the image's edges, colours cleaned."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE"),
                "mask": link("MASK", "Subject coverage, 1 = subject."),
                "halo": int_input(
                    2, 0, 10, tooltip="Edge band in px whose colours are decontaminated; 0 = off."
                ),
                "edge_refine": bool_input(True, tooltip="Snap the mask to the image's edges."),
            },
            "optional": {
                "mask_resolution": int_input(
                    SEGMENTER_RESOLUTION,
                    64,
                    8192,
                    tooltip="Side the mask was predicted at (Segment's resolution output).",
                ),
            },
        }

    def run(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        halo: int,
        edge_refine: bool,
        mask_resolution: int = SEGMENTER_RESOLUTION,
    ) -> tuple[torch.Tensor]:
        def one(img: torch.Tensor, plane: torch.Tensor) -> torch.Tensor:
            height, width = img.shape[:2]
            radius, subsample = (
                guide_params(height, width, mask_resolution) if edge_refine else (0, 1)
            )
            return refine_matte(img[..., :3], _fit(plane, height, width), halo, radius, subsample)

        return (_per_image(one, image, mask),)


class SimplyPNGShadow(_ImageNode):
    """Shadow (soft contact, hard or drop) composited under an RGBA subject."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE"),
                "mode": combo(["none", "soft", "hard", "drop"], "none"),
                "offset_x": int_input(12, -500, 500),
                "offset_y": int_input(18, -500, 500),
                "opacity": float_input(0.5, 0.0, 1.0, step=0.01),
                "blur": float_input(12.0, 0.0, 200.0, step=0.5),
            }
        }

    def run(
        self,
        image: torch.Tensor,
        mode: str,
        offset_x: int,
        offset_y: int,
        opacity: float,
        blur: float,
    ) -> tuple[torch.Tensor]:
        if mode == "none":
            return (image,)

        def one(img: torch.Tensor) -> torch.Tensor:
            return add_shadow(_rgba(img), mode, offset_x, offset_y, opacity, blur)  # type: ignore[arg-type]

        return (_per_image(one, image),)


class SimplyPNGCutout(_Node):
    """Subject cropped tight to its alpha box, with padding, square and minimum-size canvas.

    Crops differ in size per image, so the output is a list of single images.
    """

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_IS_LIST = (True,)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE", _RGBA_CUTOUT),
                "padding": float_input(4.0, 0.0, 1000.0, step=0.5),
                "padding_unit": combo(["px", "percent"], "percent"),
                "square": bool_input(False),
                "min_size": int_input(0, 0, 8192),
                "min_region": int_input(64, 0, 1_000_000),
            }
        }

    def run(
        self,
        image: torch.Tensor,
        padding: float,
        padding_unit: str,
        square: bool,
        min_size: int,
        min_region: int,
    ) -> tuple[list[torch.Tensor]]:
        def one(img: torch.Tensor) -> torch.Tensor:
            return cutout(_rgba(img), padding, padding_unit, square, min_size, min_region)  # type: ignore[arg-type]

        return ([crop.unsqueeze(0) for crop in _map(one, image)],)


class SimplyPNGWhiteBackground(_ImageNode):
    """Subject scaled to `fill` of a pure white canvas, centred, optional contact shadow (RGB)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE", _RGBA_CUTOUT),
                "fill": float_input(0.85, 0.3, 1.0, step=0.01),
                "canvas_width": int_input(2000, 256, 8192),
                "canvas_height": int_input(2000, 256, 8192),
                "shadow": bool_input(False),
            }
        }

    def run(
        self,
        image: torch.Tensor,
        fill: float,
        canvas_width: int,
        canvas_height: int,
        shadow: bool,
    ) -> tuple[torch.Tensor]:
        def one(img: torch.Tensor) -> torch.Tensor:
            return white_background(_rgba(img), fill, canvas_width, canvas_height, shadow)

        return (_per_image(one, image),)


class SimplyPNGRemovalMask(_MaskNode):
    """Removal mask (1 = repaint) from JSON regions and/or a mask image, grown by `dilate` px."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE", "The image the mask is for (gives its size)."),
                "regions": string_input(
                    "[]",
                    multiline=True,
                    tooltip='JSON list: {"kind":"rect","x","y","w","h"} or '
                    '{"kind":"polygon","points":[[x,y],...]}.',
                ),
                "units": combo(["px", "normalized"], "px"),
                "dilate": int_input(8, 0, 128),
            },
            "optional": {
                "mask_image": link("IMAGE", "White = remove; resized to the image."),
                "mask_transparency": link(
                    "MASK",
                    "The mask image's LoadImage MASK (1 - alpha): transparent pixels remove nothing.",
                ),
            },
        }

    def run(
        self,
        image: torch.Tensor,
        regions: str,
        units: str,
        dilate: int,
        mask_image: torch.Tensor | None = None,
        mask_transparency: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:
        height, width = int(image.shape[1]), int(image.shape[2])
        parsed = parse_regions(regions)
        # Regions are job params: rasterised on the host, then moved to the device.
        drawn = regions_mask(parsed, units, width, height, torch_device())  # type: ignore[arg-type]
        masks = [drawn]
        if mask_image is not None:

            def one(picture: torch.Tensor, hole: torch.Tensor | None) -> torch.Tensor:
                alpha = None if hole is None else 1.0 - hole
                return drawn | mask_from_image(picture, width, height, alpha)

            masks = _map(one, mask_image, mask_transparency)
        # Nothing to repaint would return the input unchanged, and the job would be charged.
        if not parsed and mask_image is None:
            raise InvalidRegionsError("SimplyPNG: no regions and no mask image: nothing to remove")
        if not all(bool(m.any()) for m in masks):
            raise InvalidRegionsError(
                "SimplyPNG: the mask image marks no pixel to remove (white, opaque = remove)"
            )
        grown = [dilate_mask(m, dilate) for m in masks]
        return (torch.stack([m.to(torch.float32) for m in grown]),)


class SimplyPNGInpaint(_ImageNode):
    """Repaint the masked pixels with the inpainting model (LaMa) on crops around them.

    Pixels outside the mask keep their exact input values.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE"),
                "mask": link("MASK", "1 = repaint."),
                "resolution": int_input(
                    512,
                    64,
                    2048,
                    step=8,
                    tooltip="Largest crop side the model sees; larger crops are shrunk.",
                ),
                "context": float_input(
                    DEFAULT_CONTEXT,
                    0.0,
                    4.0,
                    step=0.05,
                    tooltip="Context around each masked part, times its size.",
                ),
            }
        }

    def run(
        self, image: torch.Tensor, mask: torch.Tensor, resolution: int, context: float
    ) -> tuple[torch.Tensor]:
        if not bool((mask >= 0.5).any()):
            return (image,)
        inpainter = _get_inpainter()

        def one(img: torch.Tensor, plane: torch.Tensor) -> torch.Tensor:
            holes = _fit((plane >= 0.5).to(torch.float32), *img.shape[:2]) >= 0.5
            return remove_objects(img, holes, inpainter.inpaint_tensor, resolution, context)

        return (_per_image(one, image, mask),)


class SimplyPNGFillTransparent(_ImageNode):
    """RGB with hidden colours (under alpha 0) replaced by the nearest visible colour.

    Put before an upscaling model so the hidden background does not bleed into edges.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {"image": link("IMAGE")},
            "optional": {"transparency": link("MASK", _TRANSPARENCY)},
        }

    def run(
        self, image: torch.Tensor, transparency: torch.Tensor | None = None
    ) -> tuple[torch.Tensor]:
        def one(img: torch.Tensor, holes: torch.Tensor | None) -> torch.Tensor:
            rgb, alpha = _split_alpha(img, holes)
            return rgb.clone() if alpha is None else fill_transparent(rgb, alpha)

        return (_per_image(one, image, transparency),)


class SimplyPNGUpscaleToLongEdge(_ImageNode):
    """Exact resize to `target` px on the long edge, alpha kept (RGBA out when there is alpha).

    `upscaled` is a LAZY input wired to the core ImageUpscaleWithModel branch: ComfyUI asks
    `check_lazy_status` before running that branch, and we request it only when the image is
    smaller than the target. An input already at or above the target never loads or runs the
    model; it is only Lanczos-resized. Alpha never goes through the model (which takes RGB):
    it comes from `transparency` (LoadImage's MASK) or the image's 4th channel, is resized on its
    own to the same exact size, and is joined back.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE", "The original image."),
                "upscaled": link(
                    "IMAGE", "Model-upscaled image; evaluated only if needed.", lazy=True
                ),
                "target": int_input(2048, 256, 8192),
            },
            "optional": {"transparency": link("MASK", _TRANSPARENCY)},
        }

    def check_lazy_status(
        self,
        image: torch.Tensor,
        upscaled: torch.Tensor | None,
        target: int,
        transparency: torch.Tensor | None = None,
    ) -> list[str]:
        height, width = image.shape[1], image.shape[2]
        return ["upscaled"] if upscaled is None and needs_model(width, height, target) else []

    def run(
        self,
        image: torch.Tensor,
        upscaled: torch.Tensor | None,
        target: int,
        transparency: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:
        height, width = int(image.shape[1]), int(image.shape[2])
        use_model = needs_model(width, height, target)
        if use_model and upscaled is None:
            logger.warning("SimplyPNG: no upscaled input; resizing the original with Lanczos")
            use_model = False
        colours = upscaled if use_model and upscaled is not None else image

        def one(original: torch.Tensor, colour: torch.Tensor, hole: torch.Tensor | None):
            _, alpha = _split_alpha(original, hole)
            rgb, out_alpha = resize_long_edge(colour[..., :3], alpha, target)
            if out_alpha is None:
                return rgb
            out_alpha = snap_alpha(out_alpha)
            rgb = rgb.masked_fill((out_alpha <= 0).unsqueeze(-1), 0.0)
            return torch.cat([rgb, out_alpha.unsqueeze(-1)], dim=-1)

        results = _map(one, image, colours, transparency)
        if len({r.shape[2] for r in results}) > 1:  # some items had alpha, some did not
            results = [_rgba(r) for r in results]
        return (torch.stack(results),)


class SimplyPNGColourKey(_ImageNode):
    """RGBA with one colour keyed out: tolerance keys fully, softness ramps the edge."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": link("IMAGE"),
                "key_color": string_input("#ffffff"),
                "tolerance": int_input(16, 0, 255),
                "softness": int_input(16, 0, 255),
            }
        }

    def run(
        self, image: torch.Tensor, key_color: str, tolerance: int, softness: int
    ) -> tuple[torch.Tensor]:
        def one(img: torch.Tensor) -> torch.Tensor:
            return colour_key(img, key_color, tolerance, softness)

        return (_per_image(one, image),)


NODE_CLASS_MAPPINGS = {
    cls.__name__: cls
    for cls in (
        SimplyPNGSegment,
        SimplyPNGMatte,
        SimplyPNGShadow,
        SimplyPNGCutout,
        SimplyPNGWhiteBackground,
        SimplyPNGRemovalMask,
        SimplyPNGInpaint,
        SimplyPNGFillTransparent,
        SimplyPNGUpscaleToLongEdge,
        SimplyPNGColourKey,
    )
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SimplyPNGSegment": "SimplyPNG Segment Subject",
    "SimplyPNGMatte": "SimplyPNG Refine Matte",
    "SimplyPNGShadow": "SimplyPNG Shadow",
    "SimplyPNGCutout": "SimplyPNG Cutout Crop",
    "SimplyPNGWhiteBackground": "SimplyPNG White Background",
    "SimplyPNGRemovalMask": "SimplyPNG Removal Mask",
    "SimplyPNGInpaint": "SimplyPNG Inpaint",
    "SimplyPNGFillTransparent": "SimplyPNG Fill Transparent Colour",
    "SimplyPNGUpscaleToLongEdge": "SimplyPNG Upscale To Long Edge",
    "SimplyPNGColourKey": "SimplyPNG Colour Key",
}
