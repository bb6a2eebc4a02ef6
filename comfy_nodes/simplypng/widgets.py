"""Builders for ComfyUI input declarations, the `(type, options)` tuples in INPUT_TYPES.

Each call returns a fresh tuple and options dict, as a hand-written INPUT_TYPES would. Option
keys are only set when given, so a declaration carries exactly what it says (ComfyUI fills in
its own defaults for the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

InputSpec = tuple[Any, ...]
InputTypes = dict[str, dict[str, InputSpec]]


def _with(options: dict[str, Any], tooltip: str | None) -> dict[str, Any]:
    if tooltip is not None:
        options["tooltip"] = tooltip
    return options


def link(kind: str, tooltip: str | None = None, *, lazy: bool = False) -> InputSpec:
    """A socket fed by another node's output (IMAGE, MASK); `lazy` means evaluated on request."""
    options = _with({"lazy": True} if lazy else {}, tooltip)
    return (kind, options) if options else (kind,)


def int_input(
    default: int, lo: int, hi: int, *, step: int | None = None, tooltip: str | None = None
) -> InputSpec:
    options: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        options["step"] = step
    return ("INT", _with(options, tooltip))


def float_input(
    default: float, lo: float, hi: float, *, step: float, tooltip: str | None = None
) -> InputSpec:
    # Step is required: ComfyUI's FLOAT default step (0.1) suits none of our widgets.
    return ("FLOAT", _with({"default": default, "min": lo, "max": hi, "step": step}, tooltip))


def bool_input(default: bool, *, tooltip: str | None = None) -> InputSpec:
    return ("BOOLEAN", _with({"default": default}, tooltip))


def string_input(default: str, *, multiline: bool = False, tooltip: str | None = None) -> InputSpec:
    options: dict[str, Any] = {"default": default}
    if multiline:
        options["multiline"] = True
    return ("STRING", _with(options, tooltip))


def combo(options: Sequence[str], default: str, *, tooltip: str | None = None) -> InputSpec:
    """A drop-down; ComfyUI declares one as the list of its choices."""
    return (list(options), _with({"default": default}, tooltip))
