"""The workflow files (ComfyUI API format) and their declarative bindings.

Core node schemas are written out below from ComfyUI 0.3.64's /object_info (only the nodes the
workflows use); our nodes' schemas come from the pack itself.
"""

import json
import typing
from pathlib import Path
from typing import Any

import pytest

from handler.params import PARAM_SPECS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
from simplypng import NODE_CLASS_MAPPINGS  # noqa: E402

# name -> (inputs {name: (type, options, required)}, output types); from ComfyUI 0.3.64.
CORE: dict[str, tuple[dict[str, tuple[Any, dict, bool]], list[str]]] = {
    "LoadImage": ({"image": ("COMBO", {}, True)}, ["IMAGE", "MASK"]),
    "SaveImage": (
        {"images": ("IMAGE", {}, True), "filename_prefix": ("STRING", {}, True)},
        [],
    ),
    "SolidMask": (
        {
            "value": ("FLOAT", {"min": 0.0, "max": 1.0}, True),
            "width": ("INT", {"min": 1, "max": 16384}, True),
            "height": ("INT", {"min": 1, "max": 16384}, True),
        },
        ["MASK"],
    ),
    "JoinImageWithAlpha": ({"image": ("IMAGE", {}, True), "alpha": ("MASK", {}, True)}, ["IMAGE"]),
    "UpscaleModelLoader": ({"model_name": ("COMBO", {}, True)}, ["UPSCALE_MODEL"]),
    "ImageUpscaleWithModel": (
        {"upscale_model": ("UPSCALE_MODEL", {}, True), "image": ("IMAGE", {}, True)},
        ["IMAGE"],
    ),
}
RAW_LOADERS = {"SimplyPNGLoadRaw", "SimplyPNGLoadPixels"}
RAW_SAVERS = {"SimplyPNGSaveRaw", "SimplyPNGSavePixels"}
WIDGETS = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}
MODEL_NAMES = {"birefnet-general", "u2netp", "big-lama", "realesrgan-x4plus"}


def _ours(cls: type) -> tuple[dict[str, tuple[Any, dict, bool]], list[str]]:
    spec = cls.INPUT_TYPES()
    inputs = {}
    for section, required in (("required", True), ("optional", False)):
        for name, declaration in spec.get(section, {}).items():
            kind = declaration[0]
            options = dict(declaration[1]) if len(declaration) > 1 else {}
            if isinstance(kind, list):
                kind, options["options"] = "COMBO", kind
            inputs[name] = (kind, options, required)
    return inputs, list(cls.RETURN_TYPES)


SCHEMAS = {**CORE, **{name: _ours(cls) for name, cls in NODE_CLASS_MAPPINGS.items()}}
WORKFLOW_FILES = sorted(p for p in WORKFLOWS.glob("*.json") if not p.name.endswith(".binding.json"))


def _load(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / name).read_text())


def _binding(job_type: str) -> dict[str, Any]:
    return _load(f"{job_type}.binding.json")


def _by_title(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["_meta"]["title"]: node for node in workflow.values()}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _workflow_errors(workflow: dict[str, Any]) -> list[str]:
    """What ComfyUI's validation would reject (types, links, ranges, required inputs)."""
    errors = []
    for node_id, node in workflow.items():
        inputs, _ = SCHEMAS[node["class_type"]]
        for name, (_, _, required) in inputs.items():
            if required and name not in node["inputs"]:
                errors.append(f"{node_id}: missing required input {name}")
        for name, value in node["inputs"].items():
            if name not in inputs:
                errors.append(f"{node_id}: unknown input {name}")
                continue
            kind, options, _ = inputs[name]
            if _is_link(value):
                source = workflow.get(value[0])
                if source is None:
                    errors.append(f"{node_id}.{name}: link to missing node {value[0]}")
                    continue
                outputs = SCHEMAS[source["class_type"]][1]
                if not 0 <= value[1] < len(outputs):
                    errors.append(f"{node_id}.{name}: no output {value[1]} on {value[0]}")
                elif outputs[value[1]] != kind:
                    errors.append(f"{node_id}.{name}: {outputs[value[1]]} into {kind}")
            elif kind not in WIDGETS:
                errors.append(f"{node_id}.{name}: {kind} input needs a link")
            else:
                errors.extend(
                    f"{node_id}.{name}: {e}" for e in _widget_errors(kind, options, value)
                )
    return errors


def _widget_errors(kind: str, options: dict, value: Any) -> list[str]:
    expected = {"INT": int, "FLOAT": (int, float), "BOOLEAN": bool, "STRING": str}.get(kind)
    if expected and (not isinstance(value, expected) or (kind != "BOOLEAN" and value is True)):
        return [f"{value!r} is not {kind}"]
    if kind in {"INT", "FLOAT"} and not options.get("min", value) <= value <= options.get(
        "max", value
    ):
        return [f"{value!r} outside {options['min']}..{options['max']}"]
    if kind == "COMBO" and "options" in options and value not in options["options"]:
        return [f"{value!r} not in {options['options']}"]
    return []


# --- the workflow files ------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_is_valid_api_format(path):
    workflow = json.loads(path.read_text())
    assert isinstance(workflow, dict) and workflow
    for node_id, node in workflow.items():
        assert isinstance(node_id, str) and node_id.isdigit()
        assert set(node) == {"class_type", "inputs", "_meta"}
        assert node["class_type"] in SCHEMAS, node["class_type"]
        assert isinstance(node["inputs"], dict)
        assert isinstance(node["_meta"]["title"], str) and node["_meta"]["title"]
    titles = [node["_meta"]["title"] for node in workflow.values()]
    assert len(titles) == len(set(titles)), "titles must be unique"
    assert _workflow_errors(workflow) == []


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_follows_the_loader_conventions(path):
    nodes = _by_title(json.loads(path.read_text()))
    # Raw pixels both ways: ComfyUI never decodes or compresses a PNG for us.
    assert nodes["Input Image"]["class_type"] in RAW_LOADERS
    assert nodes["Output"]["class_type"] in RAW_SAVERS
    kinds = {n["class_type"] for n in nodes.values()}
    assert not kinds & {"LoadImage", "SaveImage", "PreviewImage"}
    loaders = [n for n in nodes.values() if n["class_type"] in RAW_LOADERS]
    savers = [t for t, n in nodes.items() if n["class_type"] in RAW_SAVERS]
    assert savers == ["Output"]
    assert len(loaders) == (2 if path.name == "object_remove.json" else 1)


def test_the_error_finder_catches_broken_workflows():
    workflow = _load("bg_remove.json")
    workflow["3"]["inputs"]["mask"] = ["1", 0]  # IMAGE into MASK
    workflow["4"]["inputs"]["opacity"] = 2.0  # out of range
    workflow["5"]["inputs"]["images"] = ["9", 0]  # missing node
    del workflow["2"]["inputs"]["image"]
    assert len(_workflow_errors(workflow)) == 4


def test_transparent_none_moves_8bit_pixels_without_any_float_step():
    graph = _load("jpeg_to_png.json")
    assert {n["class_type"] for n in graph.values()} == {
        "SimplyPNGLoadPixels",
        "SimplyPNGSavePixels",
    }
    nodes = _by_title(graph)
    loader = next(i for i, n in graph.items() if n["_meta"]["title"] == "Input Image")
    # RGB gains an opaque alpha; an input's own alpha is kept as it is.
    assert nodes["Output"]["inputs"]["pixels"] == [loader, 0]
    assert nodes["Output"]["inputs"]["alpha"] == "add"


def test_upscale_uses_the_core_model_nodes_lazily():
    nodes = _by_title(_load("upscale_2k.json"))
    assert nodes["Upscale Model Loader"]["inputs"]["model_name"] == "RealESRGAN_x4plus.pth"
    assert nodes["Model Upscale"]["class_type"] == "ImageUpscaleWithModel"
    resize = nodes["Resize To Target"]
    inputs, _ = SCHEMAS[resize["class_type"]]
    assert inputs["upscaled"][1].get("lazy") is True
    workflow = _load("upscale_2k.json")
    model_id = next(i for i, n in workflow.items() if n["_meta"]["title"] == "Model Upscale")
    assert resize["inputs"]["upscaled"] == [model_id, 0]


# --- the bindings ------------------------------------------------------------------------------


def _workflows_of(binding: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if binding["variants"] is None:
        return {binding["workflow"]: _load(binding["workflow"])}
    return {name: _load(name) for name in binding["variants"]["workflows"].values()}


def _widget_for(annotation: Any) -> set[str]:
    """Widget kinds that can carry a param of this type."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return {"BOOLEAN"}
    if annotation is int:
        return {"INT"}
    if annotation is float:
        return {"FLOAT"}
    if origin is typing.Literal:
        return {"COMBO"}
    return {"STRING"}  # str, and lists/dicts passed as JSON strings


@pytest.mark.parametrize("job_type", sorted(PARAM_SPECS))
def test_binding_covers_every_param_with_matching_defaults(job_type):
    binding = _binding(job_type)
    spec = PARAM_SPECS[job_type][1]
    assert binding["type"] == job_type
    assert set(binding["params"]) == set(spec.model_fields) - {"v"}
    defaults = spec.model_construct().model_dump(mode="json")
    workflows = _workflows_of(binding)
    for param, target in binding["params"].items():
        if target is None:
            continue
        assert set(target) <= {"node", "input", "optional"}
        holders = [w for w in workflows.values() if target["node"] in _by_title(w)]
        assert holders, f"{param}: no node titled {target['node']!r}"
        if not target.get("optional"):
            assert len(holders) == len(workflows), f"{param} is missing from a variant"
        field = spec.model_fields[param]
        for workflow in holders:
            node = _by_title(workflow)[target["node"]]
            kind, options, _ = SCHEMAS[node["class_type"]][0][target["input"]]
            assert kind in _widget_for(field.annotation), f"{param}: {kind}"
            if kind == "COMBO":
                assert set(typing.get_args(field.annotation)) <= set(options["options"])
            value = defaults[param]
            expected = json.dumps(value) if isinstance(value, list | dict) else value
            assert node["inputs"][target["input"]] == expected, f"{param} default differs"


@pytest.mark.parametrize("job_type", sorted(PARAM_SPECS))
def test_binding_inputs_outputs_and_models(job_type):
    binding = _binding(job_type)
    assert (WORKFLOWS / binding["workflow"]).is_file()
    for workflow in _workflows_of(binding).values():
        nodes = _by_title(workflow)
        image = binding["image_input"]
        assert nodes[image["node"]]["class_type"] in RAW_LOADERS
        assert image["input"] == "image"
        assert all(nodes[t]["class_type"] in RAW_SAVERS for t in binding["outputs"])
    refs = [
        *binding["models"],
        *(r for rs in binding.get("model_variants", {}).values() for r in rs),
    ]
    names = {
        n for ref in refs for n in ([ref] if isinstance(ref, str) else ref["choices"].values())
    }
    assert names and names <= MODEL_NAMES


@pytest.mark.parametrize(
    "job_type", ["bg_remove", "cutout_subject", "white_bg_ecomm", "jpeg_to_png"]
)
def test_the_segmenter_param_chooses_the_model_and_the_segment_node(job_type):
    """Every segmenter a job may name maps to a pinned model and reaches the Segment node."""
    binding = _binding(job_type)
    segmenters = set(typing.get_args(PARAM_SPECS[job_type][1].model_fields["segmenter"].annotation))
    refs = [
        *binding["models"],
        *(r for rs in binding.get("model_variants", {}).values() for r in rs),
    ]
    choices = [ref for ref in refs if not isinstance(ref, str)]
    assert choices and all(ref["param"] == "segmenter" for ref in choices)
    assert all(set(ref["choices"]) == segmenters for ref in choices)
    assert binding["params"]["segmenter"]["node"] == "Segment"
    assert binding["params"]["segmenter"]["input"] == "model"


def test_jpeg_to_png_variants_cover_every_transparent_value():
    binding = _binding("jpeg_to_png")
    options = typing.get_args(PARAM_SPECS["jpeg_to_png"][1].model_fields["transparent"].annotation)
    assert binding["variants"]["param"] == "transparent"
    assert set(binding["variants"]["workflows"]) == set(options)
    assert binding["variants"]["workflows"]["none"] == binding["workflow"]


def test_object_remove_still_validates_when_the_mask_image_is_pruned():
    binding = _binding("object_remove")
    workflow = _load(binding["workflow"])
    assert binding["mask_input"] == {"node": "Mask Image", "input": "image"}
    mask_id = next(i for i, n in workflow.items() if n["_meta"]["title"] == "Mask Image")
    assert workflow[mask_id]["class_type"] == "SimplyPNGLoadRaw"
    # What the handler does without mask_url: drop the node and every link into it.
    del workflow[mask_id]
    for node in workflow.values():
        node["inputs"] = {
            k: v for k, v in node["inputs"].items() if not (_is_link(v) and v[0] == mask_id)
        }
    assert _workflow_errors(workflow) == []
