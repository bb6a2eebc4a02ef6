"""Check workflows against a running server's GET /object_info before accepting jobs.

Pure: takes the registry and the /object_info document, returns human-readable problems that
name the workflow, node title and input.
"""

from __future__ import annotations

import typing
from typing import Any

from handler.params import PARAM_SPECS
from handler.workflows import Binding, Slot, node_by_title

_LITERAL_TYPES = (str, int, float, bool)


def combo_options(spec: Any) -> list[Any] | None:
    """Options of a dropdown input in either encoding, or None when it is not a dropdown.

    Older nodes give `[["a", "b"], {...}]`; newer ones `["COMBO", {"options": [...]}]`.
    """
    if not isinstance(spec, list | tuple) or not spec:
        return None
    head = spec[0]
    if isinstance(head, list):
        return list(head)
    if head == "COMBO":
        extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return list(extra.get("options", []))
    return None


def _input_specs(info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = info.get("input", {})
    required = dict(spec.get("required", {}) or {})
    optional = dict(spec.get("optional", {}) or {})
    optional.update(spec.get("hidden", {}) or {})
    return required, optional


def _literal_values(job_type: str, param: str) -> list[Any]:
    values: list[Any] = []
    for model in PARAM_SPECS[job_type].values():
        field = model.model_fields.get(param)
        if field is None:
            continue
        annotation = field.annotation
        if typing.get_origin(annotation) is typing.Literal:
            values += list(typing.get_args(annotation))
    return values


def check_graph(
    graph_name: str, graph: dict[str, Any], object_info: dict[str, Any], runtime: set[str]
) -> list[str]:
    """Problems in one graph; `runtime` holds node_id:input pairs filled in per job."""
    problems: list[str] = []
    for node_id, node in graph.items():
        title = node.get("_meta", {}).get("title", node_id)
        class_type = node.get("class_type")
        where = f"{graph_name}: node {title!r} ({class_type})"
        info = object_info.get(class_type)
        if info is None:
            problems.append(f"{where}: class is not installed in ComfyUI")
            continue
        required, optional = _input_specs(info)
        inputs = node.get("inputs", {})
        for name in required:
            if name not in inputs:
                problems.append(f"{where}: required input {name!r} is not set")
        for name, value in inputs.items():
            spec = required.get(name, optional.get(name))
            if spec is None:
                problems.append(f"{where}: input {name!r} is unknown to ComfyUI")
                continue
            if f"{node_id}:{name}" in runtime or isinstance(value, list):
                continue
            options = combo_options(spec)
            if options is not None and isinstance(value, _LITERAL_TYPES) and value not in options:
                problems.append(f"{where}: input {name!r} value {value!r} not in {options[:8]}")
    return problems


def check_binding_against(binding: Binding, object_info: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for graph_name, graph in binding.graphs.items():
        runtime: set[str] = set()
        param_slots: list[tuple[str | None, Slot]] = [(None, binding.image_input)]
        if binding.mask_input is not None:
            param_slots.append((None, binding.mask_input))
        param_slots += [(name, s) for name, s in binding.params.items() if s is not None]
        for param, slot in param_slots:
            node_id = node_by_title(graph, slot.node)
            if node_id is None:
                continue
            runtime.add(f"{node_id}:{slot.input}")
            if param is None:
                continue
            class_type = graph[node_id].get("class_type")
            info = object_info.get(class_type) if isinstance(class_type, str) else None
            if info is None:
                continue
            required, optional = _input_specs(info)
            options = combo_options(required.get(slot.input, optional.get(slot.input)))
            if options is None:
                continue
            missing = [v for v in _literal_values(binding.type, param) if v not in options]
            if missing:
                problems.append(
                    f"{graph_name}: node {slot.node!r} input {slot.input!r} lacks options "
                    f"{missing} needed by param {param!r}"
                )
        for title in binding.outputs:
            node_id = node_by_title(graph, title)
            if node_id is not None:
                runtime.add(f"{node_id}:filename_prefix")
        problems += check_graph(graph_name, graph, object_info, runtime)
    return problems


def check_registry(registry: dict[str, Binding], object_info: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for binding in registry.values():
        problems += check_binding_against(binding, object_info)
    return problems
