"""What every parity test shares: the devices it runs on and the 8-bit tolerance step."""

from __future__ import annotations

import pytest
import torch

# CPU always; CUDA where a GPU is present (the worker's device), skipped with the reason here.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]
# Results on the 8-bit grid: a float difference far below one step can still move a value that
# sits on a rounding boundary to the neighbouring k/255, never further.
GRID_STEP = 1.0 / 255.0 + 1e-6
