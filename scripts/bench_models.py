#!/usr/bin/env python3
"""Latency per processing type: the node-pack path each workflow runs, full-size models.

    python scripts/bench_models.py                 # 1024 and 2048 inputs (+ 512 for upscale_2k)
    python scripts/bench_models.py --quick         # CPU smoke run, small inputs (~2 min, 2 cores)
    python scripts/bench_models.py --models-dir /comfyui/models   # with BiRefNet's real code

Each type runs the prompt the handler would submit (workflows/*.json filled by
handler.workflows.build_prompt) through the SimplyPNG nodes, in graph order; the few ComfyUI
core nodes in those graphs are emulated here:
  bg_remove, cutout_subject, white_bg_ecomm, jpeg_to_png[subject]
                   Segment (BiRefNet) -> Matte -> Shadow / Cutout / White background
  object_remove    Removal mask (one centred square, a quarter of each side) -> Inpaint (LaMa)
  upscale_2k       Fill transparent -> RealESRGAN_x4plus in ComfyUI's 512 px tiles (32 px
                   overlap, float32, as UpscaleModelLoader leaves it) when the input is below
                   the target -> exact resize to the target (2048)
  jpeg_to_png      [none] opaque alpha joined on; [color] Colour key
Weights are random: the compute is the same as with the real ones. LaMa is spandrel's big-LaMa
(51 M parameters), the upscaler spandrel's RRDBNet at x4plus size (64 features, 23 blocks).
BiRefNet runs its real architecture when the pinned code is under --models-dir (the image has
it; this repository does not); its downstream nodes then get a fixed elliptical subject, so
random logits cannot change their work. Without that code the segment step is skipped and the
rows say "ops only". Not timed: loading models, LoadImage, PNG encoding (bench_handler.py).

Prints the median and minimum of N runs after one warm-up, then each type's ratio of its
largest to smallest input. Numbers compare builds and machines; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from handler.handover import InputRef  # noqa: E402
from handler.params import validate_params  # noqa: E402
from handler.workflows import Binding, build_prompt, load_registry  # noqa: E402

TYPES = (
    "bg_remove",
    "cutout_subject",
    "object_remove",
    "white_bg_ecomm",
    "upscale_2k",
    "jpeg_to_png",
)
JPEG_VARIANTS = ("none", "color", "subject")
SEGMENTED = {"bg_remove", "cutout_subject", "white_bg_ecomm", "jpeg_to_png[subject]"}
TILE, OVERLAP = 512, 32  # ComfyUI's ImageUpscaleWithModel


@dataclass
class Row:
    case: str
    size: int
    times: list[float]
    note: str = ""


# --- the node pack, from the checkout or from the image's ComfyUI --------------------------


def pack_parent(explicit: Path | None) -> Path:
    """The folder holding the `simplypng` node pack."""
    if explicit is not None:
        return explicit
    checkout = REPO_ROOT / "comfy_nodes"
    if (checkout / "simplypng").is_dir():
        return checkout
    return Path(os.environ.get("COMFYUI_DIR", "/comfyui")) / "custom_nodes"


def import_pack(parent: Path) -> Any:
    if str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    import simplypng

    return simplypng


# --- models with random weights --------------------------------------------------------------


def ellipse(height: int, width: int) -> np.ndarray:
    """A centred elliptical subject covering about half the frame."""
    yy, xx = np.ogrid[:height, :width]
    inside = ((yy - height / 2) / (height * 0.4)) ** 2 + ((xx - width / 2) / (width * 0.3)) ** 2
    return (inside <= 1.0).astype(np.float32)


def birefnet(models_dir: Path | None, lock: Path, device: torch.device) -> Any:
    """The pinned BiRefNet code's model with random weights; raises ModelFileError without it."""
    from simplypng.models.device import dtype_for
    from simplypng.models.errors import ModelFileError
    from simplypng.models.lockfile import read_model_files, read_verified
    from simplypng.models.segmenter import (
        MODEL_NAME,
        Segmenter,
        import_snapshot,
        instantiate,
    )

    if models_dir is None:
        raise ModelFileError("no --models-dir (or SIMPLYPNG_MODELS_DIR) holding birefnet.py")
    sources = {}
    for file in (f for f in read_model_files(lock, MODEL_NAME) if f.role == "code"):
        path = models_dir / file.dest
        if not path.is_file():
            raise ModelFileError(f"{path} not found (fetch_models.py --tasks bg_remove)")
        sources[Path(file.dest).stem] = (path, read_verified(path, file))
    model = instantiate(import_snapshot("_simplypng_bench_birefnet", sources))
    dtype = dtype_for(device, "fp16")
    return Segmenter(model.eval().to(device=device, dtype=dtype), device, dtype)


def fixed_subject_segmenter(real: Any | None) -> Any:
    """A Segmenter that runs `real` (for its cost, when there is one), then returns `ellipse`."""
    from simplypng.models.segmenter import Segmenter

    class FixedSubject(Segmenter):
        def predict(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
            if real is not None:
                real.predict(images)
            masks = np.stack([ellipse(*image.shape[:2]) for image in images])
            return torch.from_numpy(masks).to(self.device)

    if real is None:
        return FixedSubject(torch.nn.Identity(), torch.device("cpu"), torch.float32)
    return FixedSubject(real.model, real.device, real.dtype)


def lama(device: torch.device) -> Any:
    from simplypng.models.device import dtype_for
    from simplypng.models.inpainter import Inpainter
    from spandrel import ModelLoader
    from spandrel.architectures.LaMa import LaMa

    descriptor = ModelLoader().load_from_state_dict(LaMa(in_nc=4, out_nc=3).state_dict())
    # as the loader: bf16 where the GPU has it, float32 otherwise (LaMa has no fp16)
    dtype = dtype_for(device, "bf16") if descriptor.supports_bfloat16 else torch.float32
    descriptor.to(device).to(dtype).eval()
    return Inpainter(descriptor, device, dtype)


def esrgan_x4plus(device: torch.device) -> Any:
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    return ModelLoader().load_from_state_dict(net.state_dict()).to(device).eval()


# --- the ComfyUI core nodes the workflows use ------------------------------------------------


def upscale_with_model(model: Any, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """ImageUpscaleWithModel: the model over 512 px tiles stepping 480 px (tile blending,
    which costs little next to the model, is left out); float32 as ComfyUI runs it."""
    pixels = image.movedim(-1, -3).to(device)
    height, width = pixels.shape[-2:]
    scale = model.scale
    out = torch.empty((pixels.shape[0], 3, height * scale, width * scale), dtype=torch.float32)
    with torch.inference_mode():
        if height <= TILE and width <= TILE:
            out = model(pixels).float().cpu()
        else:
            for top in range(0, height, TILE - OVERLAP):
                y = max(0, min(height - OVERLAP, top))
                for left in range(0, width, TILE - OVERLAP):
                    x = max(0, min(width - OVERLAP, left))
                    result = model(pixels[..., y : y + TILE, x : x + TILE]).float().cpu()
                    rows, cols = result.shape[-2:]
                    out[..., y * scale : y * scale + rows, x * scale : x * scale + cols] = result
    return torch.clamp(out.movedim(-3, -1), 0.0, 1.0)


def core_nodes(upscaler: Callable[[], Any], device: torch.device) -> dict[str, Callable]:
    def load_image(image: Any) -> tuple[Any, ...]:
        raise AssertionError("LoadImage is given its output directly")

    def join_alpha(image: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor]:
        alpha = F.interpolate(alpha[:, None], size=image.shape[1:3], mode="bilinear")[:, 0]
        return (torch.cat([image[..., :3], (1.0 - alpha)[..., None]], dim=-1),)

    return {
        "LoadImage": load_image,
        "UpscaleModelLoader": lambda model_name: (upscaler(),),
        "ImageUpscaleWithModel": lambda upscale_model, image: (
            upscale_with_model(upscale_model, image, device),
        ),
        "SolidMask": lambda value, width, height: (torch.full((1, height, width), value),),
        "JoinImageWithAlpha": join_alpha,
        "SaveImage": lambda images, filename_prefix: (),
    }


SAVERS = ("SaveImage", "SimplyPNGSaveRaw", "SimplyPNGSavePixels")


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    from simplypng.raw_nodes import to_uint8 as convert

    return convert(image)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def execute(
    graph: Mapping[str, Any], image: torch.Tensor, pack: Any, core: Mapping[str, Callable]
) -> None:
    """Run `graph` from its save nodes back, as ComfyUI would, the loader giving `image`."""
    outputs: dict[str, tuple[Any, ...]] = {}
    placeholder = torch.zeros(1, 64, 64)  # LoadImage's MASK for an image without alpha

    def evaluate(node_id: str) -> tuple[Any, ...]:
        if node_id in outputs:
            return outputs[node_id]
        node = graph[node_id]
        kind, inputs = node["class_type"], node["inputs"]

        def resolve(value: Any) -> Any:
            return evaluate(value[0])[value[1]] if _is_link(value) else value

        if kind in ("LoadImage", "SimplyPNGLoadRaw"):
            result: tuple[Any, ...] = (image, placeholder)
        elif kind == "SimplyPNGLoadPixels":
            result = (image.mul(255.0).round().to(torch.uint8),)
        elif kind in SAVERS:
            # The device-side 8-bit conversion and the copy to the host; no file is written.
            pixels = resolve(inputs["images" if "images" in inputs else "pixels"])
            for batch in [pixels] if isinstance(pixels, torch.Tensor) else pixels:
                for item in batch:  # a list output (Cutout) holds one batch per crop
                    (to_uint8(item) if item.is_floating_point() else item).cpu()
            result = ()
        elif kind in pack.NODE_CLASS_MAPPINGS:
            cls = pack.NODE_CLASS_MAPPINGS[kind]
            declared = cls.INPUT_TYPES()
            specs = {**declared.get("required", {}), **declared.get("optional", {})}
            lazy = {n for n, spec in specs.items() if len(spec) > 1 and spec[1].get("lazy")}
            instance = cls()
            kwargs = {n: (None if n in lazy else resolve(v)) for n, v in inputs.items()}
            if lazy:
                for name in instance.check_lazy_status(**kwargs):
                    kwargs[name] = resolve(inputs[name])
            result = getattr(instance, cls.FUNCTION)(**kwargs)
        elif kind in core:
            result = core[kind](**{n: resolve(v) for n, v in inputs.items()})
        else:
            raise SystemExit(f"bench_models: no emulation of ComfyUI node {kind}")
        outputs[node_id] = result
        return result

    for node_id, node in graph.items():
        if node["class_type"] in SAVERS:
            evaluate(node_id)


# --- cases -----------------------------------------------------------------------------------


def case_params(case: str, size: int, target: int) -> tuple[str, dict[str, Any]]:
    """(type, params) of a case name such as `jpeg_to_png[color]`."""
    job_type, _, variant = case.partition("[")
    if job_type == "jpeg_to_png":
        return job_type, {"transparent": variant.rstrip("]")}
    if job_type == "object_remove":
        side = size // 4
        corner = (size - side) // 2
        region = {"kind": "rect", "x": corner, "y": corner, "w": side, "h": side}
        return job_type, {"regions": [region]}
    if job_type == "upscale_2k":
        return job_type, {"target": target}
    return job_type, {}


def prompt_for(binding: Binding, params: dict[str, Any]) -> dict[str, Any]:
    spec = validate_params(binding.type, params)
    return build_prompt(binding, spec, image=InputRef("in.npy"), mask=None, output_prefix="b")


def photo(size: int) -> torch.Tensor:
    """A 1xSxSx3 image in 0..1: smooth colour ramps plus noise, on the 8-bit grid."""
    rng = np.random.default_rng(size)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    rgb = np.stack(
        [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 0.5)],
        axis=-1,
    )
    rgb = np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1)
    return torch.from_numpy(np.round(rgb * 255).astype(np.float32)[None] / 255.0)


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> list[float]:
    """Seconds per run of `fn`, after one untimed warm-up."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def cases(types: list[str]) -> list[str]:
    out: list[str] = []
    for job_type in types:
        if job_type == "jpeg_to_png":
            out += [f"jpeg_to_png[{variant}]" for variant in JPEG_VARIANTS]
        else:
            out.append(job_type)
    return out


def case_sizes(case: str, args: argparse.Namespace) -> list[int]:
    """Input sizes of a case; upscale_2k also starts from its '2K' source size."""
    if case == "upscale_2k":
        return sorted({args.upscale_from, *args.sizes})
    return args.sizes


# --- report ----------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"cpu ({torch.get_num_threads()} threads)"


def report(rows: list[Row], sizes: list[int], device: torch.device, segmenter_note: str) -> None:
    print(f"\n{'type':<22} {'input':<11} {'runs':>4} {'median ms':>10} {'min ms':>10}  note")
    for row in rows:
        print(
            f"{row.case:<22} {f'{row.size}x{row.size}':<11} {len(row.times):>4} "
            f"{statistics.median(row.times) * 1e3:>10.1f} {min(row.times) * 1e3:>10.1f}  "
            f"{row.note}"
        )
    small, large = min(sizes), max(sizes)
    medians = {(row.case, row.size): statistics.median(row.times) for row in rows}
    for case in dict.fromkeys(row.case for row in rows):
        if small != large and (case, small) in medians and (case, large) in medians:
            ratio = medians[case, large] / medians[case, small]
            print(f"ratio {case} {large}x{large} / {small}x{small}: {ratio:.3g}")
    print(f"segmenter: {segmenter_note}")
    print(f"device: {device_name(device)}, torch {torch.__version__}")


# --- post-processing: numpy reference against the torch ops ----------------------------------


def ops_inputs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RGB photo, soft subject mask from a 4x smaller prediction, RGBA cutout) at size²."""
    rgb = photo(size)[0].numpy()
    small = max(8, size // 4)
    coarse = ellipse(small, small)
    mask = np.asarray(
        torch.nn.functional.interpolate(
            torch.from_numpy(coarse)[None, None], size=(size, size), mode="bilinear"
        )[0, 0]
    )
    rgba = np.concatenate([rgb * (mask[..., None] > 0), mask[..., None]], axis=-1)
    return rgb, mask.astype(np.float32), rgba.astype(np.float32)


BATCH = 4  # inputs per batch in the segmenter's images/s figure
OP_MODULES = ("alpha", "colour_key", "cutout", "ecomm", "matting", "regions", "resize", "shadow")


def op_modules(package: str) -> types.SimpleNamespace:
    """The op modules of a package as attributes (the shipped torch ops, or the reference)."""
    return types.SimpleNamespace(
        **{name: importlib.import_module(f"{package}.{name}") for name in OP_MODULES}
    )


def op_pairs(
    size: int, device: torch.device
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (numpy reference call, torch call) on the same inputs."""
    from simplypng.raw_nodes import to_uint8 as device_uint8

    ops, ref = op_modules("simplypng.ops"), op_modules("tests.reference_ops")

    rgb, mask, rgba = ops_inputs(size)
    t_rgb, t_mask, t_rgba = (torch.from_numpy(a).to(device) for a in (rgb, mask, rgba))
    radius, sub = ops.matting.guide_params(size, size)
    solid = mask >= 0.5
    t_solid = torch.from_numpy(solid).to(device)

    def np_uint8(image: np.ndarray) -> np.ndarray:
        return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def np_bg_remove() -> object:
        matte = ref.matting.refine_matte(rgb, mask, 2, radius, sub)
        return np_uint8(ref.shadow.add_shadow(matte, "soft", 12, 18, 0.5, 12.0))

    def t_bg_remove() -> object:
        matte = ops.matting.refine_matte(t_rgb, t_mask, 2, radius, sub)
        return device_uint8(ops.shadow.add_shadow(matte, "soft", 12, 18, 0.5, 12.0)).cpu()

    def np_ecomm() -> object:
        matte = ref.matting.refine_matte(rgb, mask, 2, radius, sub)
        return np_uint8(ref.ecomm.white_background(matte, 0.85, 2000, 2000, True))

    def t_ecomm() -> object:
        matte = ops.matting.refine_matte(t_rgb, t_mask, 2, radius, sub)
        return device_uint8(ops.ecomm.white_background(matte, 0.85, 2000, 2000, True)).cpu()

    return {
        "guided filter (edge refine)": (
            lambda: ref.matting.guided_refine(rgb, mask, radius, sub),
            lambda: ops.matting.guided_refine(t_rgb, t_mask, radius, sub),
        ),
        "blur-fusion foreground": (
            lambda: ref.matting.estimate_foreground(rgb, mask),
            lambda: ops.matting.estimate_foreground(t_rgb, t_mask),
        ),
        "halo decontamination (2 px)": (
            lambda: ref.matting.decontaminate(rgb, mask, 2),
            lambda: ops.matting.decontaminate(t_rgb, t_mask, 2),
        ),
        "shadow soft": (
            lambda: ref.shadow.add_shadow(rgba, "soft", 12, 18, 0.5, 12.0),
            lambda: ops.shadow.add_shadow(t_rgba, "soft", 12, 18, 0.5, 12.0),
        ),
        "shadow drop": (
            lambda: ref.shadow.add_shadow(rgba, "drop", 12, 18, 0.5, 12.0),
            lambda: ops.shadow.add_shadow(t_rgba, "drop", 12, 18, 0.5, 12.0),
        ),
        "e-commerce compose + fill": (
            lambda: ref.ecomm.white_background(rgba, 0.85, 2000, 2000, True),
            lambda: ops.ecomm.white_background(t_rgba, 0.85, 2000, 2000, True),
        ),
        "cutout crop": (
            lambda: ref.cutout.cutout(rgba, 4.0, "percent", False, 0, 64),
            lambda: ops.cutout.cutout(t_rgba, 4.0, "percent", False, 0, 64),
        ),
        "colour key": (
            lambda: ref.colour_key.colour_key(rgb, "#ffffff", 16, 16),
            lambda: ops.colour_key.colour_key(t_rgb, "#ffffff", 16, 16),
        ),
        "resize lanczos to half": (
            lambda: ref.resize.resize(rgb, (size // 2, size // 2), "lanczos"),
            lambda: ops.resize.resize(t_rgb, (size // 2, size // 2), "lanczos"),
        ),
        "mask dilate (8 px)": (
            lambda: ref.regions.dilate(solid, 8),
            lambda: ops.regions.dilate(t_solid, 8),
        ),
        "fill transparent": (
            lambda: ref.alpha.fill_transparent(rgb, mask),
            lambda: ops.alpha.fill_transparent(t_rgb, t_mask),
        ),
        "WHOLE bg_remove post-processing": (np_bg_remove, t_bg_remove),
        "WHOLE white_bg_ecomm post-processing": (np_ecomm, t_ecomm),
    }


def bench_ops(sizes: list[int], runs: int, device: torch.device, model: Any | None) -> None:
    """Median ms of the numpy reference (CPU) and the torch op (on `device`), interleaved.

    With a real segmenter (`model`), also the post-processing against the model's own time.
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    print(f"\npost-processing: numpy reference (cpu) vs torch ({device_name(device)})")
    print(f"{'op':<38} {'input':<11} {'numpy ms':>9} {'torch ms':>9} {'speed-up':>8}")
    whole: dict[int, float] = {}
    for size in sizes:
        for name, (reference, ported) in op_pairs(size, device).items():
            times: dict[str, list[float]] = {"numpy": [], "torch": []}
            for run in range(runs + 1):  # the first round warms up, then alternate the order
                order = [("numpy", reference), ("torch", ported)]
                for label, fn in order if run % 2 else order[::-1]:
                    sync()
                    started = time.perf_counter()
                    fn()
                    sync()
                    if run:
                        times[label].append(time.perf_counter() - started)
            a, b = (statistics.median(times[k]) for k in ("numpy", "torch"))
            if name.startswith("WHOLE bg_remove"):
                whole[size] = b
            print(
                f"{name:<38} {f'{size}x{size}':<11} {a * 1e3:>9.1f} {b * 1e3:>9.1f} {a / b:>7.2f}x"
            )
    print("target: the WHOLE rows at least 5x on the CPU")
    if model is None:
        print("model: none (pass --models-dir with BiRefNet's code for post-processing vs model)")
        return
    for size in sizes:
        image = photo(size).to(device)
        model_s = statistics.median(timed(functools.partial(model.predict, image), runs, device))
        share = whole[size] / model_s
        print(
            f"bg_remove {size}x{size}: model {model_s * 1e3:.1f} ms, post-processing "
            f"{whole[size] * 1e3:.1f} ms = {share:.0%} of the model (target <= 25% at 1024)"
        )
        batch = image.repeat(BATCH, 1, 1, 1)  # what a job of same-size inputs sends
        batch_s = statistics.median(timed(functools.partial(model.predict, batch), runs, device))
        print(
            f"segmenter {size}x{size}: {1 / model_s:.2f} images/s one at a time, "
            f"{BATCH / batch_s:.2f} images/s in batches of {BATCH}"
        )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 run (CPU smoke)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (5; 1 with --quick)")
    parser.add_argument("--sizes", default=None, help="square input sizes (1024,2048)")
    parser.add_argument("--upscale-from", type=int, default=None, help="upscale_2k source (512)")
    parser.add_argument("--target", type=int, default=None, help="upscale_2k long edge (2048)")
    parser.add_argument("--types", default=",".join(TYPES), help="types to run (all)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument(
        "--segmenter",
        choices=("auto", "real", "skip"),
        default="auto",
        help="BiRefNet's real architecture, or skip it (auto: real unless --quick)",
    )
    env_dir = os.environ.get("SIMPLYPNG_MODELS_DIR")
    comfy_models = Path(os.environ.get("COMFYUI_DIR", "/comfyui")) / "models"
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(env_dir) if env_dir else (comfy_models if comfy_models.is_dir() else None),
        help="ComfyUI models folder holding the pinned birefnet.py",
    )
    parser.add_argument("--lock", type=Path, default=None, help="models.lock (default: repo)")
    parser.add_argument("--pack-dir", type=Path, default=None, help="folder holding simplypng/")
    parser.add_argument(
        "--ops",
        action="store_true",
        help="only the post-processing ops: numpy reference (CPU) vs torch (--device), and with "
        "--models-dir the post-processing against BiRefNet's own time",
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 5)
    args.sizes = [
        int(s) for s in (args.sizes or ("128,256" if args.quick else "1024,2048")).split(",")
    ]
    args.upscale_from = args.upscale_from or (64 if args.quick else 512)
    args.target = args.target or (256 if args.quick else 2048)
    args.types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = sorted(set(args.types) - set(TYPES))
    if unknown:
        parser.error(f"unknown types {unknown}; known: {', '.join(TYPES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pack = import_pack(pack_parent(args.pack_dir))

    from simplypng.models import registry
    from simplypng.models.device import torch_device
    from simplypng.models.errors import ModelFileError
    from simplypng.models.location import default_lock_path

    device = torch.device(args.device) if args.device else torch_device()
    lock = args.lock or default_lock_path()
    if args.ops:
        try:
            model = birefnet(args.models_dir, lock, device) if args.models_dir else None
        except ModelFileError as exc:
            print(f"note: no real segmenter ({exc})")
            model = None
        bench_ops(args.sizes, args.runs, device, model)
        return 0
    if device.type == "cpu" and not args.quick:
        print("note: full sizes on CPU take many minutes; --quick is a short run")

    real = None
    if args.segmenter == "skip" or (args.segmenter == "auto" and args.quick):
        segmenter_note = "skipped (--segmenter skip or --quick): rows marked ops only"
    else:
        try:
            real = birefnet(args.models_dir, lock, device)
            segmenter_note = f"BiRefNet real architecture, random weights, {real.dtype}"
        except ModelFileError as exc:
            if args.segmenter == "real":
                raise SystemExit(f"bench_models: {exc}") from None
            segmenter_note = f"skipped ({exc}): rows marked ops only"
    registry.use(segmenter=fixed_subject_segmenter(real))

    upscaler: list[Any] = []  # built on first use, like ComfyUI's loader node caches it

    def get_upscaler() -> Any:
        if not upscaler:
            upscaler.append(esrgan_x4plus(device))
        return upscaler[0]

    core = core_nodes(get_upscaler, device)
    bindings = load_registry(REPO_ROOT / "workflows", args.types)
    rows: list[Row] = []
    for case in cases(args.types):
        if case.startswith("object_remove"):
            registry.use(inpainter=lama(device))
        for size in case_sizes(case, args):
            job_type, params = case_params(case, size, args.target)
            graph = prompt_for(bindings[job_type], params)
            image = photo(size)
            print(f"running {case} at {size}x{size} ...", flush=True)
            run = functools.partial(execute, graph, image, pack, core)
            times = timed(run, args.runs, device)
            note = "ops only" if case in SEGMENTED and real is None else ""
            if case == "upscale_2k":
                note = "model + resize" if size < args.target else "resize only (no model)"
            rows.append(Row(case, size, times, note))
    registry.reset_cache()
    report(rows, args.sizes, device, segmenter_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
