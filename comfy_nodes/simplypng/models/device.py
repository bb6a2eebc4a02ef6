"""Device and dtype choice, memory release, and keeping hub libraries offline."""

from __future__ import annotations

import os
from typing import Literal

import torch

HalfKind = Literal["fp16", "bf16"]
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def torch_device() -> torch.device:
    """ComfyUI's device when inside ComfyUI (it honours --cpu, --cuda-device), else CUDA or CPU."""
    try:
        from comfy import model_management  # ComfyUI's module; importable only inside it
    except ImportError:
        model_management = None
    if model_management is not None:
        return torch.device(model_management.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(device: torch.device, prefer: HalfKind, bf16_supported: bool) -> torch.dtype:
    """Half precision on CUDA only (fp16 gave NaNs on MPS; CPU half is slow), else float32.

    bf16 falls back to float32 on a GPU without bf16 (LaMa does not support fp16).
    """
    if device.type != "cuda":
        return torch.float32
    if prefer == "bf16":
        return torch.bfloat16 if bf16_supported else torch.float32
    return torch.float16


def dtype_for(device: torch.device, prefer: HalfKind) -> torch.dtype:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return choose_dtype(device, prefer, bf16)


def release_memory() -> None:
    """Give cached GPU blocks back after an out-of-memory error."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def force_offline() -> None:
    """Make Hugging Face libraries refuse network access if the pinned code imports them.

    Only affects libraries imported after this call; the image should also export both
    variables for the ComfyUI process.
    """
    for name in _OFFLINE_VARS:
        os.environ[name] = "1"
