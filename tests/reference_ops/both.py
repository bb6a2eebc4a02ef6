"""Run a quality test file on both implementations: the numpy reference and the shipped torch op.

`both_implementations(globals(), "matting", [...])` returns an autouse fixture, parametrized
"numpy" / "torch", that swaps the named functions in the test module for the torch ones from
`simplypng.ops.<module>` (numpy arrays in and out, so the test bodies stay as they are). The
quality assertions then hold for the code that ships, not only for its reference.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest


def as_numpy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn on torch tensors, called with numpy arrays; tensors in the result come back as numpy."""
    import torch

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.cpu().numpy()
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        return value

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def to_torch(value: Any) -> Any:
            return (
                torch.from_numpy(np.ascontiguousarray(value))
                if isinstance(value, np.ndarray)
                else value
            )

        args = tuple(to_torch(a) for a in args)
        kwargs = {k: to_torch(v) for k, v in kwargs.items()}
        return convert(fn(*args, **kwargs))

    return wrapper


def both_implementations(
    namespace: dict[str, Any], module: str, names: Iterable[str]
) -> Callable[..., Iterator[str]]:
    names = tuple(names)

    @pytest.fixture(autouse=True, params=["numpy", "torch"])
    def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
        if request.param == "torch":
            ported = importlib.import_module(f"simplypng.ops.{module}")
            for name in names:
                monkeypatch.setitem(namespace, name, as_numpy(getattr(ported, name)))
        yield request.param

    return implementation
