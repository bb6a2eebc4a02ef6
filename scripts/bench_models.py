#!/usr/bin/env python3
"""Latency of each model type at its real architecture size, random weights.

    python scripts/bench_models.py                 # GPU: 1024 and 2048 inputs, 3 runs
    python scripts/bench_models.py --quick         # CPU: smaller inputs, 1 run (~2 min)

segmenter  BiRefNet predict (resize to 1024, run, resize back) per input size; needs the
           pinned birefnet.py under --models-dir (skipped with the reason otherwise)
lama       big-LaMa inpaint of a square crop (512; 256 with --quick), a quarter masked
esrgan     RealESRGAN_x4plus-sized RRDBNet through spandrel, 512 -> 2048 (128 -> 512 quick)

Prints the median and minimum of N timed runs after one warm-up, then ratios. Numbers are
for comparing builds and machines; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from comfy_nodes.simplypng.models.device import dtype_for, torch_device  # noqa: E402
from comfy_nodes.simplypng.models.errors import ModelFileError  # noqa: E402
from comfy_nodes.simplypng.models.inpainter import Inpainter  # noqa: E402
from comfy_nodes.simplypng.models.location import default_lock_path  # noqa: E402
from comfy_nodes.simplypng.models.lockfile import read_model_files, read_verified  # noqa: E402
from comfy_nodes.simplypng.models.segmenter import MODEL_NAME as SEGMENTER_MODEL  # noqa: E402
from comfy_nodes.simplypng.models.segmenter import (  # noqa: E402
    Segmenter,
    import_snapshot,
    instantiate,
)

Row = tuple[str, str, list[float]]


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> list[float]:
    """Seconds per run of `fn`, after one untimed warm-up."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def real_birefnet(models_dir: Path | None, lock: Path) -> torch.nn.Module:
    """The pinned snapshot's BiRefNet class with random weights (the weights file is not read)."""
    if models_dir is None:
        raise ModelFileError("no --models-dir (or SIMPLYPNG_MODELS_DIR) to find birefnet.py in")
    code = [f for f in read_model_files(lock, SEGMENTER_MODEL) if f.role == "code"]
    sources = {}
    for file in code:
        path = models_dir / file.dest
        if not path.is_file():
            raise ModelFileError(f"{path} not found (fetch_models.py --tasks bg_remove)")
        sources[Path(file.dest).stem] = (path, read_verified(path, file))
    return instantiate(import_snapshot("_simplypng_bench_birefnet", sources))


def bench_segmenter(args, device: torch.device, rows: list[Row]) -> None:
    try:
        model = real_birefnet(args.models_dir, args.lock)
    except ModelFileError as exc:
        print(f"segmenter skipped: {exc}")
        return
    dtype = dtype_for(device, "fp16")
    segmenter = Segmenter(model.eval().to(device=device, dtype=dtype), device, dtype)
    for size in args.sizes:
        image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
        rows.append(
            (
                "segmenter",
                f"{size}x{size}",
                timed(lambda image=image: segmenter.predict(image), args.runs, device),
            )
        )


def bench_lama(args, device: torch.device, rows: list[Row]) -> None:
    from spandrel import ModelLoader
    from spandrel.architectures.LaMa import LaMa

    descriptor = ModelLoader().load_from_state_dict(LaMa(in_nc=4, out_nc=3).state_dict())
    dtype = dtype_for(device, "bf16")
    descriptor.to(device).to(dtype).eval()
    inpainter = Inpainter(descriptor, device, dtype)
    crop = args.lama_crop
    image = np.random.default_rng(1).random((crop, crop, 3), dtype=np.float32)
    mask = np.zeros((crop, crop), dtype=np.float32)
    mask[crop // 4 : 3 * crop // 4, crop // 4 : 3 * crop // 4] = 1
    rows.append(
        (
            "lama",
            f"{crop}x{crop} crop",
            timed(lambda: inpainter.inpaint(image, mask), args.runs, device),
        )
    )


def bench_esrgan(args, device: torch.device, rows: list[Row]) -> None:
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)  # x4plus size
    descriptor = ModelLoader().load_from_state_dict(net.state_dict())
    dtype = dtype_for(device, "fp16")
    descriptor.to(device).to(dtype).eval()
    size = args.esrgan_input
    pixels = torch.rand(1, 3, size, size, device=device, dtype=dtype)

    def run() -> None:
        with torch.inference_mode():
            descriptor(pixels)

    rows.append(("esrgan", f"{size}->{size * 4}", timed(run, args.runs, device)))


def report(rows: list[Row], device: torch.device) -> None:
    print(f"\n{'model':<10} {'input':<16} {'runs':>4} {'median ms':>10} {'min ms':>10}")
    medians = {}
    for model, label, times in rows:
        medians[(model, label)] = statistics.median(times)
        print(
            f"{model:<10} {label:<16} {len(times):>4} {statistics.median(times) * 1e3:>10.1f} "
            f"{min(times) * 1e3:>10.1f}"
        )
    segments = [(label, t) for (model, label), t in medians.items() if model == "segmenter"]
    if len(segments) > 1:
        base_label, base = segments[0]
        for label, t in segments[1:]:
            print(f"ratio segmenter {label} / {base_label}: {t / base:.2f}")
    lama = [t for (model, _), t in medians.items() if model == "lama"]
    for (model, label), t in medians.items():
        if lama and model != "lama":
            print(f"ratio {model} {label} / lama: {t / lama[0]:.2f}")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="timed runs (3; 1 with --quick)")
    parser.add_argument("--sizes", default=None, help="segmenter input sizes (1024,2048)")
    parser.add_argument("--quick", action="store_true", help="small inputs for a CPU run")
    parser.add_argument("--only", default="segmenter,lama,esrgan", help="models to run")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    env_dir = os.environ.get("SIMPLYPNG_MODELS_DIR")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(env_dir) if env_dir else None,
        help="ComfyUI models folder holding the pinned birefnet.py",
    )
    parser.add_argument("--lock", type=Path, default=None, help="models.lock (default: repo)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    sizes = args.sizes or ("512,1024" if args.quick else "1024,2048")
    args.sizes = [int(s) for s in sizes.split(",") if s]
    args.lama_crop = 256 if args.quick else 512
    args.esrgan_input = 128 if args.quick else 512
    args.lock = args.lock or default_lock_path()
    args.only = {name.strip() for name in args.only.split(",")}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device) if args.device else torch_device()
    if device.type == "cpu" and not args.quick:
        print("note: full sizes on CPU take many minutes; pass --quick for a short run")
    rows: list[Row] = []
    for name, bench in (
        ("segmenter", bench_segmenter),
        ("lama", bench_lama),
        ("esrgan", bench_esrgan),
    ):
        if name in args.only:
            print(f"running {name} ...", flush=True)
            bench(args, device, rows)
    report(rows, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
