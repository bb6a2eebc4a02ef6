"""Prompt validation for the ComfyUI test double: ComfyUI 0.3.64's rules and error shapes.

A port of the checks in ComfyUI's execution.validate_prompt / validate_inputs, producing the
same `error` and `node_errors` JSON. NOT ComfyUI.
"""

from __future__ import annotations

import inspect
import traceback
from typing import Any

# --------------------------------------------------------------------------------------------
# Small pure helpers shared by validation and execution.


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


# A ComfyUI node class: duck-typed (INPUT_TYPES, RETURN_TYPES, FUNCTION, ...), as ComfyUI reads it.
NodeClass = Any


def full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


def input_info(cls: NodeClass, name: str) -> tuple[Any, str | None, dict[str, Any]]:
    spec = cls.INPUT_TYPES()
    for category in ("required", "optional", "hidden"):
        if name in (spec.get(category) or {}):
            info = spec[category][name]
            if isinstance(info, str):  # hidden inputs are bare type names
                return info, category, {}
            extra = info[1] if len(info) > 1 else {}
            return info[0], category, extra
    return None, None, {}


def declared_inputs(cls: NodeClass) -> list[str]:
    spec = cls.INPUT_TYPES()
    return list(spec.get("required") or {}) + list(spec.get("optional") or {})


def function_args(fn: Any) -> list[str]:
    spec = inspect.getfullargspec(fn)
    return list(spec.args) + (["**"] if spec.varkw is not None else [])


def error_body(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def validate_prompt(
    prompt: Any, node_classes: dict[str, NodeClass]
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    """(valid, error, outputs to run, node_errors) as ComfyUI's validate_prompt returns them.

    Like ComfyUI it converts INT/FLOAT/STRING/BOOLEAN values in `prompt` in place.
    """
    if not isinstance(prompt, dict):
        raise ValueError("prompt is not an object")
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return False, error_body("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
        cls = node_classes.get(node["class_type"])
        if cls is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return False, error_body("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
        if getattr(cls, "OUTPUT_NODE", False) is True:
            outputs.append(node_id)
    if not outputs:
        return False, error_body("prompt_no_outputs", "Prompt has no outputs"), [], {}

    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
    for output in outputs:
        try:
            ok, reasons, _ = _validate_inputs(prompt, output, validated, node_classes)
        except Exception as exc:
            ok, reasons = False, [_exception_reason("exception_during_validation", exc)]
            validated[output] = (False, reasons, output)
        if ok:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_ok, node_reasons, _) in validated.items():
            if node_ok is not True and node_reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(
            f"{reason['message']}: {reason['details']}"
            for _, reasons in failed
            for reason in reasons
        )
        error = error_body("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        error["details"] = details
        return False, error, [], node_errors
    return True, None, good, node_errors


def _exception_reason(kind: str, exc: Exception, **extra: Any) -> dict[str, Any]:
    message = "Exception when validating " + (
        "inner node" if kind == "exception_during_inner_validation" else "node"
    )
    return error_body(
        kind,
        message,
        str(exc),
        **extra,
        exception_message=str(exc),
        exception_type=full_type_name(type(exc)),
        traceback=traceback.format_tb(exc.__traceback__),
    )


def _validate_inputs(
    prompt: dict[str, Any],
    node_id: str,
    validated: dict[str, Any],
    node_classes: dict[str, NodeClass],
) -> tuple[bool, list[dict[str, Any]], str]:
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    inputs = node.setdefault("inputs", {})
    cls = node_classes[node["class_type"]]
    validate_fn = getattr(cls, "VALIDATE_INPUTS", None)
    validate_args = function_args(validate_fn) if validate_fn is not None else []
    errors: list[dict[str, Any]] = []
    valid = True
    for name in declared_inputs(cls):
        input_type, category, extra = input_info(cls, name)
        info = [input_type, extra]
        if name not in inputs:
            if category == "required":
                errors.append(
                    error_body(
                        "required_input_missing",
                        "Required input is missing",
                        name,
                        input_name=name,
                    )
                )
            continue
        value = inputs[name]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(
                    error_body(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                        input_name=name,
                        input_config=info,
                        received_value=value,
                    )
                )
                continue
            source_id = value[0]
            source_cls = node_classes[prompt[source_id]["class_type"]]
            received = source_cls.RETURN_TYPES[value[1]]
            if not _types_match(received, input_type):
                errors.append(
                    error_body(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({input_type})",
                        input_name=name,
                        input_config=info,
                        received_type=received,
                        linked_node=value,
                    )
                )
                continue
            try:
                if _validate_inputs(prompt, source_id, validated, node_classes)[0] is False:
                    valid = False
            except Exception as exc:
                valid = False
                reason = _exception_reason(
                    "exception_during_inner_validation",
                    exc,
                    input_name=name,
                    input_config=info,
                    linked_node=value,
                )
                validated[source_id] = (False, [reason], source_id)
            continue
        try:
            converter = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
            if isinstance(input_type, str) and input_type in converter:
                value = inputs[name] = converter[input_type](value)
        except Exception as exc:
            errors.append(
                error_body(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{name}, {value}, {exc}",
                    input_name=name,
                    input_config=info,
                    received_value=value,
                    exception_message=str(exc),
                )
            )
            continue
        if name in validate_args or "**" in validate_args:
            continue
        if "min" in extra and value < extra["min"]:
            errors.append(
                error_body(
                    "value_smaller_than_min",
                    f"Value {value} smaller than min of {extra['min']}",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=value,
                )
            )
            continue
        if "max" in extra and value > extra["max"]:
            errors.append(
                error_body(
                    "value_bigger_than_max",
                    f"Value {value} bigger than max of {extra['max']}",
                    name,
                    input_name=name,
                    input_config=info,
                    received_value=value,
                )
            )
            continue
        # Only the old list encoding is checked here: ComfyUI 0.3.64 does not validate
        # "COMBO" (newer schema) values before execution either.
        if isinstance(input_type, list) and value not in input_type:
            listed = (
                str(input_type) if len(input_type) <= 20 else f"(list of length {len(input_type)})"
            )
            errors.append(
                error_body(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listed}",
                    input_name=name,
                    input_config=info if len(input_type) <= 20 else None,
                    received_value=value,
                )
            )
    if validate_fn is not None:
        arguments = {
            key: value
            for key, value in inputs.items()
            if (key in validate_args or "**" in validate_args) and not is_link(value)
        }
        result = validate_fn(**arguments)
        if result is not True:
            for name in arguments:
                details = name if result is False else f"{name} - {result}"
                errors.append(
                    error_body(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        details,
                        input_name=name,
                    )
                )
    outcome = (not errors and valid is True, errors, node_id)
    validated[node_id] = outcome
    return outcome


def _types_match(received: Any, expected: Any) -> bool:
    """comfy_execution.validation.validate_node_input (non-strict)."""
    if received == expected or expected == "*" or received == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    ours = {part.strip() for part in received.split(",")}
    theirs = {part.strip() for part in expected.split(",")}
    return bool(ours & theirs)
