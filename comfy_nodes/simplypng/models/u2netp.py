"""u2netp, the lite segmenter: the pinned ONNX file, run by onnxruntime or converted to torch.

Both runtimes read the same checksummed bytes. Which one runs is chosen per device, by
measurement (README "Segmenters", scripts/bench_segmenters.py): onnxruntime on the CPU, where a
whole predict took 236-280 ms against torch's 282-301 ms on 2 cores; torch on CUDA, where the weights are
loaded into our own copy of the architecture (u2netp_arch.py) so that the masks stay on the
GPU, batches run as one pass, half precision applies, and the image needs no second CUDA
runtime. SIMPLYPNG_U2NETP_RUNTIME=torch|onnxruntime overrides the choice.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from .device import dtype_for
from .errors import InferenceError, ModelFileError
from .lockfile import read_model_files, read_verified, resolve_files
from .segmenter import Segmenter, SegmenterSpec, normalise
from .u2netp_arch import U2NetP, onnx_convolutions

log = logging.getLogger(__name__)

MODEL_NAME = "u2netp"
NATIVE_SIZE = 320  # the export's fixed input, and the size U²-Net was trained at
ENV_RUNTIME = "SIMPLYPNG_U2NETP_RUNTIME"
Runtime = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime")


def prepare(image: torch.Tensor) -> torch.Tensor:
    """Bx3xSxS in 0..1 -> u2netp's input: scaled by each image's maximum, then ImageNet-normalised.

    Dividing by the maximum is what rembg (whose export we pin) does before normalising.
    """
    peak = image.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return normalise(image / peak)


def probabilities(outputs: object, batch: int) -> torch.Tensor:
    """The fused output, already a sigmoid, as it is.

    rembg and U²-Net's demo also stretch each mask to 0..1 (min-max). We don't: on every scene
    of the quality suite the IoU was the same either way, and on an empty studio sweep the
    stretch turned noise into a "subject" where the raw mask stays below 0.002 (NO_SUBJECT).
    """
    if (
        not isinstance(outputs, torch.Tensor)
        or outputs.ndim != 4
        or tuple(outputs.shape[:2]) != (batch, 1)
    ):
        raise InferenceError(f"u2netp returned an unexpected output (want {batch}x1xHxW)")
    return outputs.float()


U2NETP = SegmenterSpec("u2netp", NATIVE_SIZE, prepare, probabilities)


def choose_runtime(requested: str, device: torch.device, onnxruntime_installed: bool) -> Runtime:
    """auto: onnxruntime on the CPU when it is installed, torch otherwise (and on CUDA)."""
    if requested not in RUNTIMES:
        raise ModelFileError(f"{ENV_RUNTIME}={requested!r}: expected one of {', '.join(RUNTIMES)}")
    if requested == "onnxruntime" and not onnxruntime_installed:
        raise ModelFileError(f"{ENV_RUNTIME}=onnxruntime but onnxruntime is not installed")
    if requested == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_installed else "torch"
    return "onnxruntime" if requested == "onnxruntime" else "torch"


class _Probabilities(nn.Module):
    """U2NetP plus the sigmoid the ONNX export ends in, so both runtimes return the same thing."""

    def __init__(self, net: U2NetP):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last: about 1.5x faster than the default layout on the CPU here, and what
        # cuDNN's half-precision kernels prefer.
        return torch.sigmoid(self.net(x.contiguous(memory_format=torch.channels_last)))


def torch_model(onnx_bytes: bytes, source: Path) -> nn.Module:
    """Our U2NetP with the export's weights, every conv checked against its ONNX node."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load_from_string(onnx_bytes).graph
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ModelFileError(f"{source} is not an ONNX model: {exc}") from exc
    initializers = {init.name: init for init in graph.initializer}
    nodes = [node for node in graph.node if node.op_type == "Conv"]
    net = U2NetP()
    convs = onnx_convolutions(net)
    if len(nodes) != len(convs):
        raise ModelFileError(
            f"{source} has {len(nodes)} convolutions, the u2netp architecture {len(convs)}"
        )
    names = {id(module): name for name, module in net.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for node, conv in zip(nodes, convs, strict=True):
        dilation = next((tuple(a.ints) for a in node.attribute if a.name == "dilations"), (1, 1))
        try:
            weight, bias = (numpy_helper.to_array(initializers[n]) for n in node.input[1:3])
        except (KeyError, ValueError) as exc:
            raise ModelFileError(f"{source}: Conv {node.name} has no weights ({exc})") from exc
        if weight.shape != tuple(conv.weight.shape) or dilation != conv.dilation:
            raise ModelFileError(
                f"{source}: Conv {node.name} is {weight.shape} dilated {dilation}, the "
                f"architecture expects {tuple(conv.weight.shape)} dilated {conv.dilation}"
            )
        prefix = names[id(conv)]
        state[f"{prefix}.weight"] = torch.from_numpy(np.array(weight, dtype=np.float32))
        state[f"{prefix}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    net.load_state_dict(state, strict=True)
    return _Probabilities(net.to(memory_format=torch.channels_last)).eval()


class OnnxRuntimeModel:
    """u2netp through an onnxruntime CPU session; takes and returns torch tensors.

    The export fixes its batch dimension at 1, so a batch runs one image at a time (batches
    gave no per-image gain on the CPU anyway).
    """

    def __init__(self, onnx_bytes: bytes, source: Path):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(
                onnx_bytes, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ModelFileError(f"onnxruntime cannot load {source}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        host = x.detach().to("cpu", torch.float32).numpy()
        outputs = [
            self.session.run([self.output_name], {self.input_name: host[i : i + 1]})[0]
            for i in range(len(host))
        ]
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)


def runtime_from_env() -> str:
    return os.environ.get(ENV_RUNTIME, "auto").strip().lower() or "auto"


def load_u2netp(
    models_dir: Path,
    lock_path: Path,
    verify_sha256: bool,
    device: torch.device,
    runtime: str | None = None,
) -> Segmenter:
    """Check the pinned file (always by sha256: it is 4.6 MB), build the chosen runtime."""
    del verify_sha256  # the bytes are always hashed before they are parsed
    files = read_model_files(lock_path, MODEL_NAME)
    weights = [f for f in files if f.role == "weights"]
    if len(weights) != 1:
        raise ModelFileError(f"models.lock must list one weights file for {MODEL_NAME}")
    path = resolve_files(models_dir, weights, verify_sha256=False)[weights[0].name]
    data = read_verified(path, weights[0])
    installed = importlib.util.find_spec("onnxruntime") is not None
    chosen = choose_runtime(runtime or runtime_from_env(), device, installed)
    model: Callable[[torch.Tensor], object]
    if chosen == "onnxruntime":
        model, dtype = OnnxRuntimeModel(data, path), torch.float32
    else:
        dtype = dtype_for(device, "fp16")
        model = torch_model(data, path).to(device=device, dtype=dtype)
    log.info("loaded %s on %s with %s as %s", MODEL_NAME, device, chosen, dtype)
    return Segmenter(model, device, dtype, spec=U2NETP, runtime=chosen)
