"""The ComfyUI test double reproduces real ComfyUI 0.3.64 behaviour.

The expected frame sequences and error bodies below were transcribed from recordings of a real
0.3.64 server (same graphs, same order of websocket messages, same JSON shapes).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from tests.fakes.comfy_double import ComfyDouble, Faults, serve_in_thread

CLIENT = "0123456789abcdef0123456789abcdef"

# A 3-node chain, nothing cached (recorded: LoadImage -> ImageScaleBy -> SaveImage).
SUCCESS = [
    "status", "status", "execution_start", "execution_cached",
    "progress_state", "executing", "progress_state",
    "progress_state", "executing", "progress_state",
    "progress_state", "executing", "executed", "progress_state",
    "execution_success", "status", "executing",
]  # fmt: skip
# The identical prompt again: only the output node re-sends `executed`.
CACHED_RERUN = [
    "status", "status", "execution_start", "execution_cached",
    "executed", "progress_state", "execution_success", "status", "executing",
]  # fmt: skip
# Only SaveImage.filename_prefix changed.
PARTIAL_CACHE = [
    "status", "status", "execution_start", "execution_cached",
    "progress_state", "executing", "executed", "progress_state",
    "execution_success", "status", "executing",
]  # fmt: skip
# ImageToMask(alpha) on an RGB image, LoadImage cached.
EXECUTION_ERROR = [
    "status", "status", "execution_start", "execution_cached",
    "progress_state", "executing", "execution_error", "status", "executing",
]  # fmt: skip
ERROR_KEYS = {
    "prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
    "traceback", "current_inputs", "current_outputs", "timestamp",
}  # fmt: skip


@pytest.fixture
def double(tmp_path: Path):
    with serve_in_thread(ComfyDouble(tmp_path)) as server:
        (server.input_dir / "sample_input.png").write_bytes(png((128 // 2, 96 // 2)))
        yield server


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 60, 128)[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def chain(prefix: str = "sample_success", scale: Any = 2.0, image: str = "sample_input.png"):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "scale_by": scale},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


class Recorder:
    """A websocket client of the double that queues prompts and records their frames."""

    def __init__(self, double: ComfyDouble):
        self.base = double.base_url or ""
        self.ws: Any = None
        self.http = httpx.AsyncClient(base_url=self.base, trust_env=False)
        self.first: dict[str, Any] = {}

    async def __aenter__(self) -> Recorder:
        url = self.base.replace("http", "ws", 1) + f"/ws?clientId={CLIENT}"
        self.ws = await websockets.connect(url, proxy=None)
        self.first = json.loads(await self.ws.recv())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.http.aclose()

    async def post(self, prompt: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/prompt", json={"prompt": prompt, "client_id": CLIENT})

    async def frames_until_done(self, prompt_id: str) -> list[tuple[str, Any]]:
        frames: list[tuple[str, Any]] = []
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 10)
            if isinstance(raw, bytes):
                frames.append(("binary", raw))
                continue
            message = json.loads(raw)
            frames.append((message["type"], message["data"]))
            data = message["data"]
            if message["type"] == "executing" and data["node"] is None:
                assert data["prompt_id"] == prompt_id
                return frames

    async def run(self, prompt: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
        response = await self.post(prompt)
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        return prompt_id, await self.frames_until_done(prompt_id)

    async def history(self, prompt_id: str) -> dict[str, Any]:
        return (await self.http.get(f"/history/{prompt_id}")).json()


def kinds(frames: list[tuple[str, Any]]) -> list[str]:
    return [kind for kind, _ in frames]


def of(frames: list[tuple[str, Any]], kind: str) -> list[Any]:
    return [data for k, data in frames if k == kind]


async def test_first_frame_is_status_with_sid(double):
    async with Recorder(double) as rec:
        assert rec.first == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": CLIENT},
        }


async def test_success_cached_rerun_and_partial_cache_sequences(double):
    async with Recorder(double) as rec:
        first_id, frames = await rec.run(chain())
        assert kinds(frames) == SUCCESS
        assert [d["node"] for d in of(frames, "executing")] == ["1", "2", "3", None]
        assert of(frames, "execution_cached")[0]["nodes"] == []
        image = {"filename": "sample_success_00001_.png", "subfolder": "", "type": "output"}
        assert of(frames, "executed")[0]["output"] == {"images": [image]}
        assert [s["status"]["exec_info"]["queue_remaining"] for s in of(frames, "status")] == [
            1,
            1,
            0,
        ]

        _, frames = await rec.run(chain())
        assert kinds(frames) == CACHED_RERUN
        assert of(frames, "execution_cached")[0]["nodes"] == ["1", "2", "3"]
        assert of(frames, "executed")[0]["output"] == {"images": [image]}
        assert sorted(p.name for p in double.output_dir.iterdir()) == [image["filename"]]

        _, frames = await rec.run(chain(prefix="sample_success_b"))
        assert kinds(frames) == PARTIAL_CACHE
        assert of(frames, "execution_cached")[0]["nodes"] == ["1", "2"]

        history = (await rec.history(first_id))[first_id]
        _number, prompt_id, prompt, extra, outputs = history["prompt"]
        assert (prompt_id, extra, outputs) == (first_id, {"client_id": CLIENT}, ["3"])
        assert prompt == chain()
        assert history["outputs"] == {"3": {"images": [image]}}
        status = history["status"]
        assert (status["status_str"], status["completed"]) == ("success", True)
        assert [m[0] for m in status["messages"]] == [
            "execution_start",
            "execution_cached",
            "execution_success",
        ]


async def test_saved_png_matches_the_graph(double):
    async with Recorder(double) as rec:
        await rec.run(chain(scale=2.0))
        response = await rec.http.get(
            "/view", params={"filename": "sample_success_00001_.png", "type": "output"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (128, 96)
        missing = await rec.http.get("/view", params={"filename": "nope.png", "type": "output"})
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("change", "node", "error_type", "message", "details"),
    [
        (
            {"1": {"image": "does_not_exist_12345.png"}},
            "1",
            "custom_validation_failed",
            "Custom validation failed for node",
            "image - Invalid image file: does_not_exist_12345.png",
        ),
        (
            {"2": {"image": ["1", 1]}},
            "2",
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            "image, received_type(MASK) mismatch input_type(IMAGE)",
        ),
        (
            {"2": {"scale_by": None}},
            "2",
            "required_input_missing",
            "Required input is missing",
            "scale_by",
        ),
        (
            {"2": {"scale_by": 100.0}},
            "2",
            "value_bigger_than_max",
            "Value 100.0 bigger than max of 8.0",
            "scale_by",
        ),
        (
            {"2": {"scale_by": "abc"}},
            "2",
            "invalid_input_type",
            "Failed to convert an input value to a FLOAT value",
            "scale_by, abc, could not convert string to float: 'abc'",
        ),
        (
            {"2": {"upscale_method": "super-resolution"}},
            "2",
            "value_not_in_list",
            "Value not in list",
            "upscale_method: 'super-resolution' not in "
            "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
        ),
        (
            {"2": {"image": ["99", 0]}},
            "2",
            "exception_during_inner_validation",
            "Exception when validating inner node",
            "'99'",
        ),
        (
            {"3": {"images": ["2", 5]}},
            "3",
            "exception_during_validation",
            "Exception when validating node",
            "tuple index out of range",
        ),
    ],
)
async def test_validation_errors_have_comfyui_shape(
    double, change, node, error_type, message, details
):
    prompt = chain()
    for node_id, inputs in change.items():
        for name, value in inputs.items():
            if value is None:
                del prompt[node_id]["inputs"][name]
            else:
                prompt[node_id]["inputs"][name] = value
    async with Recorder(double) as rec:
        response = await rec.post(prompt)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["error"]["message"] == "Prompt outputs failed validation"
    assert list(body["node_errors"]) == [node]
    entry = body["node_errors"][node]
    assert entry["dependent_outputs"] == ["3"]
    assert entry["class_type"] == prompt[node]["class_type"]
    [error] = entry["errors"]
    assert (error["type"], error["message"], error["details"]) == (error_type, message, details)
    assert set(error) == {"type", "message", "details", "extra_info"}


async def test_prompt_level_rejections(double):
    async with Recorder(double) as rec:
        unknown = chain()
        unknown["2"]["class_type"] = "NoSuchNode"
        response = await rec.post(unknown)
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "type": "invalid_prompt",
                "message": "Cannot execute because node NoSuchNode does not exist.",
                "details": "Node ID '#2'",
                "extra_info": {},
            },
            "node_errors": {},
        }
        no_outputs = chain()
        del no_outputs["3"]
        response = await rec.post(no_outputs)
        assert (response.status_code, response.json()["error"]["type"]) == (
            400,
            "prompt_no_outputs",
        )
        response = await rec.http.post("/prompt", json={"client_id": CLIENT})
        assert (response.status_code, response.json()["error"]["type"]) == (400, "no_prompt")
        response = await rec.http.post("/prompt", content=b"{not json")
        assert response.status_code == 500
        assert response.text.startswith("500 Internal Server Error")


async def test_partially_valid_prompt_is_queued_with_node_errors(double):
    prompt = chain()
    prompt["4"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 1], "filename_prefix": "x"},
    }
    async with Recorder(double) as rec:
        response = await rec.post(prompt)
        assert response.status_code == 200
        body = response.json()
        assert body["node_errors"]["4"]["errors"][0]["type"] == "return_type_mismatch"
        frames = await rec.frames_until_done(body["prompt_id"])
    assert [d["node"] for d in of(frames, "executed")] == ["3"]  # the invalid branch is skipped


async def test_execution_error_sequence_and_history(double):
    error_prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sample_input.png"}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "e"}},
    }
    async with Recorder(double) as rec:
        await rec.run(chain())  # caches LoadImage, as in the recording
        prompt_id, frames = await rec.run(error_prompt)
        assert kinds(frames) == EXECUTION_ERROR
        [error] = of(frames, "execution_error")
        assert set(error) == ERROR_KEYS
        assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "ImageToMask", [])
        assert error["exception_type"] == "IndexError"
        assert (
            error["exception_message"] == "index 3 is out of bounds for dimension 3 with size 3\n"
        )
        assert error["current_inputs"]["channel"] == ["alpha"]
        assert all(isinstance(line, str) for line in error["traceback"])

        status = (await rec.history(prompt_id))[prompt_id]["status"]
        assert (status["status_str"], status["completed"]) == ("error", False)
        assert [m[0] for m in status["messages"]][-1] == "execution_error"

        # Failed nodes are not cached: the same prompt fails again, running node 2 again.
        _, frames = await rec.run(error_prompt)
        assert of(frames, "execution_error")[0]["node_id"] == "2"


async def test_corrupt_input_fails_in_load_image(double):
    (double.input_dir / "corrupt.png").write_bytes(b"\x89PNG not really")
    async with Recorder(double) as rec:
        _, frames = await rec.run(chain(image="corrupt.png"))
    [error] = of(frames, "execution_error")
    assert (error["node_type"], error["exception_type"]) == (
        "LoadImage",
        "PIL.UnidentifiedImageError",
    )


async def test_targeted_interrupt_lands_when_the_running_node_finishes(double):
    release = threading.Event()  # node 2 runs until released: still running at the interrupt
    double.faults = Faults(hold={"2": release})
    async with Recorder(double) as rec:
        response = await rec.post(chain())
        prompt_id = response.json()["prompt_id"]
        frames: list[tuple[str, Any]] = []
        while not any(k == "executing" and d["node"] == "2" for k, d in frames):
            message = json.loads(await asyncio.wait_for(rec.ws.recv(), 300))
            frames.append((message["type"], message["data"]))
        other = await rec.http.post("/interrupt", json={"prompt_id": "not-running"})
        assert (other.status_code, other.text) == (200, "")
        await rec.http.post("/interrupt", json={"prompt_id": prompt_id})
        release.set()
        frames += await rec.frames_until_done(prompt_id)
        status = (await rec.history(prompt_id))[prompt_id]["status"]
    assert kinds(frames)[-6:] == [
        "progress_state",
        "progress_state",
        "executing",
        "execution_interrupted",
        "status",
        "executing",
    ]
    [interrupted] = of(frames, "execution_interrupted")
    assert (interrupted["node_id"], interrupted["node_type"]) == ("3", "SaveImage")
    assert sorted(interrupted["executed"]) == ["1", "2"]
    assert not any(double.output_dir.iterdir())
    assert status["status_str"] == "error"
    assert "execution_interrupted" in [m[0] for m in status["messages"]]


async def test_queue_shape_and_delete_of_pending_prompt(double):
    release = threading.Event()  # the first prompt runs until released: the second waits
    double.faults = Faults(hold={"2": release})
    other = {
        "4": {"class_type": "LoadImage", "inputs": {"image": "sample_input.png"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "b"}},
    }
    async with Recorder(double) as rec:
        running = (await rec.post(chain())).json()["prompt_id"]
        pending = (await rec.post(other)).json()["prompt_id"]
        queue = (await rec.http.get("/queue")).json()
        assert [item[1] for item in queue["queue_running"]] == [running]
        assert [item[1] for item in queue["queue_pending"]] == [pending]
        assert len(queue["queue_pending"][0]) == 5
        assert (await rec.http.post("/queue", json={"delete": [pending]})).status_code == 200
        assert (await rec.http.get("/queue")).json()["queue_pending"] == []
        release.set()
        await rec.frames_until_done(running)
        assert await rec.history(pending) == {}
        assert running in await rec.history(running)


async def test_upload_naming_like_comfyui(double):
    async with httpx.AsyncClient(base_url=double.base_url or "", trust_env=False) as http:

        async def upload(name: str, data: bytes, **form: str) -> dict[str, Any]:
            response = await http.post("/upload/image", files={"image": (name, data)}, data=form)
            assert response.status_code == 200
            return response.json()

        a, b = png((4, 4)), png((5, 5))
        assert await upload("u.png", a) == {"name": "u.png", "subfolder": "", "type": "input"}
        assert (await upload("u.png", a))["name"] == "u.png"  # same bytes: reused
        assert (await upload("u.png", b))["name"] == "u (1).png"
        assert (await upload("u.png", b, overwrite="true"))["name"] == "u.png"
        assert (double.input_dir / "u.png").read_bytes() == b
        nested = await upload("v.png", a, subfolder="job-1", overwrite="true")
        assert nested == {"name": "v.png", "subfolder": "job-1", "type": "input"}
        assert (double.input_dir / "job-1" / "v.png").is_file()
        escape = await http.post(
            "/upload/image", files={"image": ("w.png", a)}, data={"subfolder": "../x"}
        )
        assert escape.status_code == 400


async def test_object_info_uses_both_combo_encodings(double):
    (double.models_dir / "upscale_models").mkdir()
    (double.models_dir / "upscale_models" / "tiny.safetensors").write_bytes(b"")
    async with httpx.AsyncClient(base_url=double.base_url or "", trust_env=False) as http:
        info = (await http.get("/object_info")).json()
        stats = (await http.get("/system_stats")).json()
    assert info["LoadImage"]["input"]["required"]["image"] == [
        ["sample_input.png"],
        {"image_upload": True},
    ]
    assert info["UpscaleModelLoader"]["input"]["required"]["model_name"] == [
        "COMBO",
        {"multiselect": False, "options": ["tiny.safetensors"]},
    ]
    assert info["SaveImage"]["output_node"] is True
    assert info["LoadImage"]["output"] == ["IMAGE", "MASK"]
    assert stats["system"]["comfyui_version"] == "0.3.64-double"


async def test_feature_flags_switch_previews_to_metadata_frames(double):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sample_input.png"}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    async with Recorder(double) as rec:
        _, frames = await rec.run(prompt)
        [legacy] = of(frames, "binary")
        assert legacy[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"  # PREVIEW_IMAGE, PNG
        assert legacy[8:16] == b"\x89PNG\r\n\x1a\n"
        await rec.ws.send(
            json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        )
        reply = json.loads(await rec.ws.recv())
        assert reply["type"] == "feature_flags"
        assert reply["data"]["supports_preview_metadata"] is True
        prompt["1"]["inputs"]["image"] = "again.png"
        (double.input_dir / "again.png").write_bytes(png((3, 3)))
        _, frames = await rec.run(prompt)
        [framed] = of(frames, "binary")
        assert framed[:4] == b"\x00\x00\x00\x04"  # PREVIEW_IMAGE_WITH_METADATA


def test_node_packs_load_like_custom_nodes(tmp_path: Path):
    pack = tmp_path / "packs" / "tinypack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text("from .nodes import NODE_CLASS_MAPPINGS\n", encoding="utf-8")
    (pack / "nodes.py").write_text(
        "class Brighten:\n"
        "    RETURN_TYPES = ('IMAGE',)\n"
        "    FUNCTION = 'run'\n"
        "    CATEGORY = 'test'\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {'image': ('IMAGE',), 'amount': ('FLOAT', {'max': 1.0})}}\n"
        "    def run(self, image, amount):\n"
        "        import comfy.model_management, comfy.utils, folder_paths\n"
        "        comfy.model_management.throw_exception_if_processing_interrupted()\n"
        "        comfy.utils.ProgressBar(1).update(1)\n"
        "        assert folder_paths.get_output_directory()\n"
        "        return ((image + amount).clamp(0, 1),)\n"
        "NODE_CLASS_MAPPINGS = {'Brighten': Brighten}\n",
        encoding="utf-8",
    )
    broken = tmp_path / "packs" / "brokenpack"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('missing dep')\n", encoding="utf-8")
    shims_before = "folder_paths" in sys.modules  # another double may be running already
    double = ComfyDouble(tmp_path / "srv", node_packs=[pack, broken])
    assert "Brighten" in double.node_classes
    (double.input_dir / "in.png").write_bytes(png((4, 4)))

    async def scenario() -> list[tuple[str, Any]]:
        prompt = chain(image="in.png")
        prompt["2"] = {"class_type": "Brighten", "inputs": {"image": ["1", 0], "amount": 0.5}}
        async with Recorder(double) as rec:
            return (await rec.run(prompt))[1]

    with serve_in_thread(double):
        assert "folder_paths" in sys.modules
        frames = asyncio.run(scenario())
    # Shims live only as long as a double with node packs does.
    assert ("folder_paths" in sys.modules) == shims_before
    assert [d["node"] for d in of(frames, "progress")] == ["2"]
    [saved] = double.output_dir.iterdir()
    pixel = Image.open(saved).getpixel((0, 0))
    expected = [min(255.0, channel + 0.5 * 255) for channel in (200, 30, 60)]
    assert all(abs(got - want) <= 1 for got, want in zip(pixel, expected, strict=True))


@pytest.mark.torch
def test_upscale_model_nodes_run_a_real_spandrel_model(tmp_path: Path):
    compact = pytest.importorskip("spandrel.architectures.Compact", reason="needs spandrel")
    from safetensors.torch import save_file

    double = ComfyDouble(tmp_path)
    model = compact.Compact(num_feat=8, num_conv=2, upscale=4)  # random weights
    folder = double.models_dir / "upscale_models"
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "tiny_compact_x4.safetensors"))
    (double.input_dir / "in.png").write_bytes(png((12, 10)))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {
            "class_type": "UpscaleModelLoader",
            "inputs": {"model_name": "tiny_compact_x4.safetensors"},
        },
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}},
    }

    async def scenario() -> list[tuple[str, Any]]:
        async with Recorder(double) as rec:
            return (await rec.run(prompt))[1]

    with serve_in_thread(double):
        frames = asyncio.run(scenario())
    assert "execution_success" in kinds(frames)
    assert [(d["node"], d["value"], d["max"]) for d in of(frames, "progress")] == [("3", 1, 1)]
    [saved] = double.output_dir.iterdir()
    assert Image.open(saved).size == (48, 40)


LAZY_PACK = """
class PickImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "other": ("IMAGE", {"lazy": True}),
                             "use_other": ("BOOLEAN", {"default": False})}}

    def check_lazy_status(self, image, other, use_other):
        return ["other"] if use_other and other is None else []

    def run(self, image, other, use_other):
        return (other if use_other else image,)

NODE_CLASS_MAPPINGS = {"PickImage": PickImage}
"""


@pytest.mark.parametrize("use_other", [False, True])
def test_lazy_inputs_run_only_when_asked_for(tmp_path: Path, use_other: bool):
    pack = tmp_path / "lazypack"
    pack.mkdir()
    (pack / "__init__.py").write_text(LAZY_PACK, encoding="utf-8")
    double = ComfyDouble(tmp_path / "srv", node_packs=[pack])
    (double.input_dir / "in.png").write_bytes(png((6, 6)))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        # The lazy branch fails whenever it runs: ImageToMask(alpha) of an RGB image.
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {
            "class_type": "PickImage",
            "inputs": {"image": ["1", 0], "other": ["3", 0], "use_other": use_other},
        },
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "p"}},
    }

    async def scenario() -> list[tuple[str, Any]]:
        async with Recorder(double) as rec:
            return (await rec.run(prompt))[1]

    with serve_in_thread(double):
        frames = asyncio.run(scenario())
    executing = [d["node"] for d in of(frames, "executing")]
    if use_other:
        # PickImage starts, asks for `other`, the branch runs (and fails).
        assert executing == ["1", "4", "2", None]
        assert of(frames, "execution_error")[0]["node_id"] == "2"
    else:
        assert executing == ["1", "4", "5", None]
        assert "execution_success" in kinds(frames)


async def test_fault_control_endpoint_injects_a_node_failure(double):
    async with Recorder(double) as rec:
        bad = await rec.http.post("/double/fault", json={"no_such_fault": 1})
        assert bad.status_code == 400
        set_fault = await rec.http.post("/double/fault", json={"fail": {"ImageScaleBy": "boom"}})
        assert set_fault.json()["fail"] == {"ImageScaleBy": "boom"}
        _, frames = await rec.run(chain())
    [error] = of(frames, "execution_error")
    assert (error["node_id"], error["exception_message"]) == ("2", "boom\n")
    assert error["exception_type"].endswith(".DoubleInjectedError")
