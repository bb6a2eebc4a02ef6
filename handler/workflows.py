"""Workflow registry: ComfyUI API-format graphs plus declarative parameter bindings.

Each type has `workflows/<type>.binding.json` naming its graph (or graph variants chosen by a
param) and mapping every validated param to a node input. Nodes are found by `_meta.title`, so
the graphs stay editable in ComfyUI without touching code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from handler.handover import InputRef
from handler.params import param_names

Graph = dict[str, dict[str, Any]]


class WorkflowConfigError(Exception):
    """A workflow or binding file is unusable; the message names the node and input."""


@dataclass(frozen=True)
class Slot:
    node: str
    input: str
    optional: bool = False


@dataclass(frozen=True)
class ModelChoice:
    """A model picked by a param's value, e.g. segmenter u2netp -> models.lock's "u2netp"."""

    param: str
    choices: dict[str, str]

    def resolve(self, params: BaseModel) -> str:
        value = str(getattr(params, self.param))
        if value not in self.choices:
            raise WorkflowConfigError(f"{self.param}={value!r} names no model")
        return self.choices[value]


ModelRef = str | ModelChoice


@dataclass(frozen=True)
class Binding:
    type: str
    graphs: dict[str, Graph]
    default_graph: str
    variant_param: str | None
    variant_map: dict[str, str]
    image_input: Slot
    mask_input: Slot | None
    outputs: tuple[str, ...]
    params: dict[str, Slot | None]
    models: tuple[ModelRef, ...]
    model_variants: dict[str, tuple[ModelRef, ...]] = field(default_factory=dict)

    def graph_name_for(self, params: BaseModel) -> str:
        if self.variant_param is None:
            return self.default_graph
        value = str(getattr(params, self.variant_param))
        return self.variant_map.get(value, self.default_graph)

    def models_for(self, params: BaseModel) -> tuple[str, ...]:
        """The models.lock names of the models a job with these params runs."""
        return tuple(
            ref if isinstance(ref, str) else ref.resolve(params) for ref in self._refs_for(params)
        )

    def _refs_for(self, params: BaseModel) -> tuple[ModelRef, ...]:
        if self.variant_param is not None:
            return self.model_variants.get(str(getattr(params, self.variant_param)), self.models)
        return self.models

    def model_choices(self, params: BaseModel) -> dict[str, str]:
        """{param: value} of the params that choose a model this job runs (e.g. segmenter)."""
        return {
            ref.param: str(getattr(params, ref.param))
            for ref in self._refs_for(params)
            if isinstance(ref, ModelChoice)
        }

    def model_refs(self) -> list[ModelRef]:
        return [*self.models, *(ref for refs in self.model_variants.values() for ref in refs)]


def _slot(raw: Any, where: str) -> Slot | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "node" not in raw or "input" not in raw:
        raise WorkflowConfigError(f"{where}: expected {{node, input}}, got {raw!r}")
    return Slot(str(raw["node"]), str(raw["input"]), bool(raw.get("optional", False)))


def _model_ref(raw: Any, where: str) -> ModelRef:
    if isinstance(raw, str):
        return raw
    if (
        isinstance(raw, Mapping)
        and isinstance(raw.get("param"), str)
        and isinstance(raw.get("choices"), Mapping)
        and all(isinstance(v, str) for v in raw["choices"].values())
    ):
        return ModelChoice(raw["param"], {str(k): v for k, v in raw["choices"].items()})
    raise WorkflowConfigError(f"{where}: expected a model name or {{param, choices}}, got {raw!r}")


def _model_refs(raw: Any, where: str) -> tuple[ModelRef, ...]:
    return tuple(_model_ref(item, f"{where}[{i}]") for i, item in enumerate(raw or []))


def load_binding(path: Path) -> Binding:
    raw = json.loads(path.read_text())
    job_type = raw["type"]
    folder = path.parent
    variants = raw.get("variants") or None
    graph_files: dict[str, str] = {}
    variant_map: dict[str, str] = {}
    if variants:
        variant_map = dict(variants["workflows"])
        graph_files = {name: name for name in variant_map.values()}
    default_graph = raw.get("workflow") or next(iter(variant_map.values()))
    graph_files[default_graph] = default_graph
    graphs = {name: json.loads((folder / name).read_text()) for name in graph_files}
    image_input = _slot(raw["image_input"], f"{path.name}: image_input")
    assert image_input is not None
    params = {
        name: _slot(slot, f"{path.name}: params.{name}") for name, slot in raw["params"].items()
    }
    model_variants = {
        k: _model_refs(v, f"{path.name}: model_variants.{k}")
        for k, v in (raw.get("model_variants") or {}).items()
    }
    return Binding(
        type=job_type,
        graphs=graphs,
        default_graph=default_graph,
        variant_param=variants["param"] if variants else None,
        variant_map=variant_map,
        image_input=image_input,
        mask_input=_slot(raw.get("mask_input"), f"{path.name}: mask_input"),
        outputs=tuple(raw["outputs"]),
        params=params,
        models=_model_refs(raw.get("models"), f"{path.name}: models"),
        model_variants=model_variants,
    )


def load_registry(workflows_dir: Path, types: Iterable[str]) -> dict[str, Binding]:
    registry: dict[str, Binding] = {}
    for job_type in types:
        path = workflows_dir / f"{job_type}.binding.json"
        if not path.exists():
            raise WorkflowConfigError(f"{job_type}: missing binding file {path}")
        binding = load_binding(path)
        if binding.type != job_type:
            raise WorkflowConfigError(f"{path.name}: declares type {binding.type!r}")
        problems = check_binding(binding)
        if problems:
            raise WorkflowConfigError("; ".join(problems))
        registry[job_type] = binding
    return registry


def node_by_title(graph: Graph, title: str) -> str | None:
    for node_id, node in graph.items():
        if node.get("_meta", {}).get("title") == title:
            return node_id
    return None


def check_binding(binding: Binding) -> list[str]:
    """Static checks: every spec param is bound and every bound title exists."""
    problems: list[str] = []
    spec_fields = param_names(binding.type)
    for name in sorted(spec_fields - set(binding.params)):
        problems.append(f"{binding.type}: param {name!r} has no binding")
    for name in sorted(set(binding.params) - spec_fields):
        problems.append(f"{binding.type}: binding names unknown param {name!r}")
    for ref in binding.model_refs():
        if isinstance(ref, ModelChoice) and ref.param not in spec_fields:
            problems.append(f"{binding.type}: models chosen by unknown param {ref.param!r}")
    for graph_name, graph in binding.graphs.items():
        slots: list[tuple[str, Slot]] = [("image_input", binding.image_input)]
        if binding.mask_input is not None:
            slots.append(("mask_input", binding.mask_input))
        slots += [(f"params.{k}", s) for k, s in binding.params.items() if s is not None]
        for label, slot in slots:
            node_id = node_by_title(graph, slot.node)
            if node_id is None:
                if not slot.optional:
                    problems.append(f"{graph_name}: {label} names missing node {slot.node!r}")
                continue
            if slot.input not in graph[node_id].get("inputs", {}):
                problems.append(f"{graph_name}: node {slot.node!r} has no input {slot.input!r}")
        for title in binding.outputs:
            if node_by_title(graph, title) is None:
                problems.append(f"{graph_name}: output node {title!r} is missing")
    return problems


# --- building a prompt -------------------------------------------------------------------


def _as_input_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"), default=_jsonable)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"not serialisable: {type(value).__name__}")


def _prune(graph: Graph, node_id: str) -> None:
    """Remove a node and every link into it (consumers' inputs must be optional)."""
    del graph[node_id]
    for node in graph.values():
        inputs = node.get("inputs", {})
        for name, value in list(inputs.items()):
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id:
                del inputs[name]


def build_prompt(
    binding: Binding,
    params: BaseModel,
    *,
    image: InputRef,
    mask: InputRef | None,
    output_prefix: str,
) -> Graph:
    """Fill a copy of the type's graph with this job's inputs and params."""
    graph = copy.deepcopy(binding.graphs[binding.graph_name_for(params)])

    def set_input(slot: Slot, value: Any) -> None:
        node_id = node_by_title(graph, slot.node)
        if node_id is None:
            if slot.optional:
                return
            raise WorkflowConfigError(f"{binding.type}: node {slot.node!r} missing")
        graph[node_id]["inputs"][slot.input] = value

    def set_file(slot: Slot, ref: InputRef) -> None:
        set_input(slot, ref.name)
        node_id = node_by_title(graph, slot.node)
        # Raw loaders read a file uploaded in parts when it was over ComfyUI's upload limit.
        if node_id is not None and "parts" in graph[node_id]["inputs"]:
            graph[node_id]["inputs"]["parts"] = ref.parts
        elif ref.parts != 1:
            raise WorkflowConfigError(f"{binding.type}: node {slot.node!r} cannot read parts")

    set_file(binding.image_input, image)
    if binding.mask_input is not None:
        if mask is not None:
            set_file(binding.mask_input, mask)
        else:
            mask_node = node_by_title(graph, binding.mask_input.node)
            if mask_node is not None:
                _prune(graph, mask_node)
    for name, slot in binding.params.items():
        if slot is not None:
            set_input(slot, _as_input_value(getattr(params, name)))
    for title in binding.outputs:
        node_id = node_by_title(graph, title)
        assert node_id is not None  # checked at load
        graph[node_id]["inputs"]["filename_prefix"] = output_prefix
    return graph


def output_node_ids(binding: Binding, graph: Graph) -> list[str]:
    ids = [node_by_title(graph, title) for title in binding.outputs]
    return [i for i in ids if i is not None]
