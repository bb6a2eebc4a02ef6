"""The binding loader, prompt builder and /object_info validation, on small synthetic graphs."""

import json
from pathlib import Path

import pytest

from handler.handover import InputRef
from handler.params import validate_params
from handler.workflow_check import check_registry, combo_options
from handler.workflows import WorkflowConfigError, build_prompt, load_registry, node_by_title

GRAPH = {
    "1": {
        "class_type": "LoadImage",
        "inputs": {"image": "x.png"},
        "_meta": {"title": "Input Image"},
    },
    "2": {
        "class_type": "UpscaleModelLoader",
        "inputs": {"model_name": "RealESRGAN_x4plus.pth"},
        "_meta": {"title": "Model"},
    },
    "3": {
        "class_type": "FitLongEdge",
        "inputs": {"image": ["1", 0], "model": ["2", 0], "target": 2048, "mode": "lanczos"},
        "_meta": {"title": "Fit"},
    },
    "4": {
        "class_type": "SaveImage",
        "inputs": {"images": ["3", 0], "filename_prefix": "x"},
        "_meta": {"title": "Output"},
    },
}
BINDING = {
    "type": "upscale_2k",
    "workflow": "upscale_2k.json",
    "image_input": {"node": "Input Image", "input": "image"},
    "mask_input": None,
    "outputs": ["Output"],
    "params": {"target": {"node": "Fit", "input": "target"}, "output_format": None},
    "models": ["realesrgan-x4plus"],
}
OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
    "UpscaleModelLoader": {
        "input": {"required": {"model_name": ["COMBO", {"options": ["RealESRGAN_x4plus.pth"]}]}}
    },
    "FitLongEdge": {
        "input": {
            "required": {
                "image": ["IMAGE"],
                "model": ["UPSCALE_MODEL"],
                "target": ["INT", {"default": 2048}],
                "mode": [["lanczos", "bicubic"], {}],
            }
        }
    },
    "SaveImage": {
        "input": {
            "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]},
            "hidden": {"prompt": "PROMPT"},
        }
    },
}


def write(folder: Path, graph: dict = GRAPH, binding: dict = BINDING) -> Path:
    (folder / "upscale_2k.json").write_text(json.dumps(graph))
    (folder / "upscale_2k.binding.json").write_text(json.dumps(binding))
    return folder


def test_prompt_is_built_by_title(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path), ["upscale_2k"])
    params = validate_params("upscale_2k", {"target": 1500})
    prompt = build_prompt(
        registry["upscale_2k"],
        params,
        image=InputRef("sp/j/in.npy"),
        mask=None,
        output_prefix="sp/j/out",
    )
    assert prompt["1"]["inputs"]["image"] == "sp/j/in.npy"
    assert prompt["3"]["inputs"]["target"] == 1500
    assert prompt["4"]["inputs"]["filename_prefix"] == "sp/j/out"
    assert GRAPH["3"]["inputs"]["target"] == 2048, "the stored graph must not be mutated"


def test_valid_graph_passes_object_info(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path), ["upscale_2k"])
    assert check_registry(registry, OBJECT_INFO) == []


def test_missing_node_class_is_named(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path), ["upscale_2k"])
    info = {k: v for k, v in OBJECT_INFO.items() if k != "FitLongEdge"}
    problems = check_registry(registry, info)
    assert any("'Fit'" in p and "FitLongEdge" in p and "not installed" in p for p in problems)


def test_missing_model_file_in_new_combo_encoding_is_named(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path), ["upscale_2k"])
    info = json.loads(json.dumps(OBJECT_INFO))
    info["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] = []
    problems = check_registry(registry, info)
    assert any("'Model'" in p and "model_name" in p for p in problems)


def test_bad_value_in_old_combo_encoding_is_named(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(GRAPH))
    graph["3"]["inputs"]["mode"] = "nearest"
    registry = load_registry(write(tmp_path, graph), ["upscale_2k"])
    problems = check_registry(registry, OBJECT_INFO)
    assert any("'Fit'" in p and "'mode'" in p for p in problems)


def test_unknown_and_missing_inputs_are_named(tmp_path: Path) -> None:
    info = json.loads(json.dumps(OBJECT_INFO))
    info["FitLongEdge"]["input"]["required"]["tile"] = ["INT", {}]
    del info["FitLongEdge"]["input"]["required"]["mode"]
    registry = load_registry(write(tmp_path), ["upscale_2k"])
    problems = check_registry(registry, info)
    assert any("required input 'tile'" in p for p in problems)
    assert any("input 'mode' is unknown" in p for p in problems)


def test_binding_must_cover_every_param(tmp_path: Path) -> None:
    binding = dict(BINDING, params={"target": {"node": "Fit", "input": "target"}})
    with pytest.raises(WorkflowConfigError, match="output_format"):
        load_registry(write(tmp_path, binding=binding), ["upscale_2k"])


def test_binding_title_must_exist(tmp_path: Path) -> None:
    binding = dict(
        BINDING, params={"target": {"node": "Nope", "input": "target"}, "output_format": None}
    )
    with pytest.raises(WorkflowConfigError, match="Nope"):
        load_registry(write(tmp_path, binding=binding), ["upscale_2k"])


def test_optional_mask_node_is_pruned_with_its_links(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(GRAPH))
    graph["5"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "m.png"},
        "_meta": {"title": "Mask Image"},
    }
    graph["3"]["inputs"]["mask"] = ["5", 0]
    binding = dict(BINDING, mask_input={"node": "Mask Image", "input": "image"})
    registry = load_registry(write(tmp_path, graph, binding), ["upscale_2k"])
    params = validate_params("upscale_2k", {})
    pruned = build_prompt(
        registry["upscale_2k"], params, image=InputRef("a"), mask=None, output_prefix="o"
    )
    assert node_by_title(pruned, "Mask Image") is None and "mask" not in pruned["3"]["inputs"]
    kept = build_prompt(
        registry["upscale_2k"], params, image=InputRef("a"), mask=InputRef("m2"), output_prefix="o"
    )
    assert kept["5"]["inputs"]["image"] == "m2" and kept["3"]["inputs"]["mask"] == ["5", 0]


@pytest.mark.parametrize(
    ("spec", "options"),
    [
        ([["a", "b"], {}], ["a", "b"]),
        (["COMBO", {"options": ["x"], "multiselect": False}], ["x"]),
        (["INT", {"default": 1}], None),
        ("garbage", None),
    ],
)
def test_combo_options_reads_both_encodings(spec, options) -> None:
    assert combo_options(spec) == options


def test_parts_reach_a_raw_loader_and_nothing_else_accepts_them(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(GRAPH))
    graph["1"] = {
        "class_type": "SimplyPNGLoadRaw",
        "inputs": {"image": "x.npy", "parts": 1},
        "_meta": graph["1"]["_meta"],
    }
    registry = load_registry(write(tmp_path, graph), ["upscale_2k"])
    params = validate_params("upscale_2k", {})
    prompt = build_prompt(
        registry["upscale_2k"], params, image=InputRef("sp/in.npy", 3), mask=None, output_prefix="o"
    )
    assert prompt["1"]["inputs"] == {"image": "sp/in.npy", "parts": 3}
    plain = load_registry(write(tmp_path), ["upscale_2k"])
    with pytest.raises(WorkflowConfigError, match="cannot read parts"):
        build_prompt(
            plain["upscale_2k"], params, image=InputRef("in.npy", 2), mask=None, output_prefix="o"
        )


# --- models chosen by a param (the segmenter) ----------------------------------------------------

SEGMENTER_CHOICE = {
    "param": "segmenter",
    "choices": {"birefnet": "birefnet-general", "u2netp": "u2netp"},
}


def test_the_real_bindings_report_the_model_the_segmenter_param_picks() -> None:
    from handler.settings import ALL_TYPES, REPO_ROOT

    registry = load_registry(REPO_ROOT / "workflows", ALL_TYPES)
    for job_type in ("bg_remove", "cutout_subject", "white_bg_ecomm"):
        binding = registry[job_type]
        assert binding.models_for(validate_params(job_type, {})) == ("birefnet-general",)
        lite = validate_params(job_type, {"segmenter": "u2netp"})
        assert binding.models_for(lite) == ("u2netp",)
        assert binding.model_choices(lite) == {"segmenter": "u2netp"}
    jpeg = registry["jpeg_to_png"]
    none = validate_params("jpeg_to_png", {"segmenter": "u2netp"})
    subject = validate_params("jpeg_to_png", {"transparent": "subject", "segmenter": "u2netp"})
    assert jpeg.models_for(none) == () and jpeg.model_choices(none) == {}
    assert jpeg.models_for(subject) == ("u2netp",)
    assert jpeg.model_choices(subject) == {"segmenter": "u2netp"}


def test_a_model_chosen_by_an_unknown_param_is_refused(tmp_path: Path) -> None:
    bad = {**BINDING, "models": [{**SEGMENTER_CHOICE, "param": "flavour"}]}
    with pytest.raises(WorkflowConfigError, match="models chosen by unknown param 'flavour'"):
        load_registry(write(tmp_path, binding=bad), ["upscale_2k"])


@pytest.mark.parametrize("ref", [42, {"param": "segmenter"}, {"param": "x", "choices": {"a": 1}}])
def test_a_malformed_model_reference_is_named(tmp_path: Path, ref) -> None:
    with pytest.raises(WorkflowConfigError, match=r"models\[0\]: expected a model name"):
        load_registry(write(tmp_path, binding={**BINDING, "models": [ref]}), ["upscale_2k"])
