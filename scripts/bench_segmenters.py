#!/usr/bin/env python3
"""The lite segmenter's runtimes side by side: u2netp through onnxruntime and through torch.

    python scripts/bench_segmenters.py                    # CPU, the u2netp bootstrap fetched
    python scripts/bench_segmenters.py --device cuda      # torch on the GPU vs onnxruntime
    python scripts/bench_segmenters.py --models-dir /comfyui/models   # in the image

Both load the same pinned, sha256-checked ONNX file through the node pack's loader
(comfy_nodes/simplypng/models/u2netp.py): onnxruntime runs it as it is on the CPU; torch runs
our copy of the architecture with the file's weights, on --device, in half precision on CUDA.
Each timed call is the whole Segmenter.predict: resize to 320², normalise, the model, resize
the mask back to the input size. The runtimes alternate within each round, after one warm-up
each, so machine noise hits both alike. Prints the median and minimum per image, the ratio,
and torch's per-image time in batches of 4 (onnxruntime's export has a fixed batch of 1).
Nothing asserts a time; the README quotes what this printed, with the machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "comfy_nodes"):
    if str(path) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from simplypng.models.segmenter import Segmenter  # noqa: E402
from simplypng.models.u2netp import load_u2netp  # noqa: E402

from handler.quality.scenes import amber_bottle  # noqa: E402


def photo(size: int) -> torch.Tensor:
    """The quality suite's amber bottle at size x size, as a 1xHxWx3 float batch."""
    image = amber_bottle().image.resize((size, size))
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    device = torch.device(args.device)
    lock = args.lock or REPO_ROOT / "models.lock"
    segmenters: dict[str, Segmenter] = {
        "onnxruntime (cpu)": load_u2netp(args.models_dir, lock, True, device, "onnxruntime"),
        f"torch ({device.type})": load_u2netp(args.models_dir, lock, True, device, "torch"),
    }
    one = photo(args.size)
    four = one.repeat(4, 1, 1, 1)
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(segmenter.predict, one) for name, segmenter in segmenters.items()
    }
    torch_segmenter = segmenters[f"torch ({device.type})"]
    calls[f"torch ({device.type}), batch of 4, per image"] = lambda: torch_segmenter.predict(four)
    for call in calls.values():
        call()  # warm-up: lazy initialisation, cuDNN autotuning, allocator
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.runs):
        for name, call in calls.items():
            seconds = timed(call, device)
            times[name].append(seconds / 4 if "batch of 4" in name else seconds)
    return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(
        f"u2netp on a {args.size}x{args.size} photo, model input 320x320, "
        f"torch threads {torch.get_num_threads()}, {args.runs} runs"
    )
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name:<40} median {medians[name]:8.1f} ms   min {min(values) * 1000:8.1f} ms")
    ort, torch_one = list(medians.values())[:2]
    print(f"  ratio torch / onnxruntime: {torch_one / ort:.2f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models-dir", type=Path, default=REPO_ROOT / "models", help="holds u2netp/u2netp.onnx"
    )
    parser.add_argument("--lock", type=Path, default=None, help="models.lock (default: repo)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=1024, help="square input side (1024)")
    parser.add_argument("--runs", type=int, default=9, help="timed rounds (9)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report(run(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
