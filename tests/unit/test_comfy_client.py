"""ComfyClient against the ComfyUI test double, over real HTTP and websockets on loopback."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from handler.comfy.client import ComfyClient, ImageRef, Progress, scrub_paths
from handler.errors import ErrorCode, JobError
from tests.fakes.comfy_double import ComfyDouble, Faults, free_port, serve_in_thread


@pytest.fixture
def double(tmp_path: Path):
    with serve_in_thread(ComfyDouble(tmp_path)) as server:
        yield server


@pytest.fixture
async def client(double: ComfyDouble):
    comfy = ComfyClient(double.base_url or "", idle_timeout_s=1.0, connect_timeout_s=2.0)
    yield comfy
    await comfy.aclose()


def rgba_png(size: tuple[int, int] = (8, 6), alpha: int = 100) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, alpha)).save(buffer, "PNG")
    return buffer.getvalue()


def cutout_prompt(image: str, prefix: str = "job/out", scale: float = 2.0) -> dict[str, Any]:
    """Load, upscale, re-attach the alpha, save: a small graph of the kind the worker runs."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "scale_by": scale},
        },
        "3": {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["2", 0], "alpha": ["1", 1]}},
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": prefix},
            "_meta": {"title": "Output"},
        },
    }


def posted_prompt_ids(double: ComfyDouble) -> list[str]:
    return [r["json"]["prompt_id"] for r in double.requests if r["path"] == "/prompt"]


def cleanup_calls(double: ComfyDouble, prompt_id: str) -> list[str]:
    calls = []
    for request in double.requests:
        body = request["json"]
        if request["path"] == "/interrupt" and body == {"prompt_id": prompt_id}:
            calls.append("interrupt")
        if request["path"] == "/queue" and body == {"delete": [prompt_id]}:
            calls.append("delete")
    return calls


async def wait_for_history(client: ComfyClient, prompt_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not (entry := await client.history(prompt_id)):
            await asyncio.sleep(0.05)
    return entry


async def test_version_and_object_info(client: ComfyClient):
    assert await client.comfyui_version() == "0.3.64-double"
    assert "LoadImage" in await client.object_info()


async def test_upload_run_and_download(client: ComfyClient, double: ComfyDouble):
    image = await client.upload_image(rgba_png(), "in.png", "job-1")
    assert image == "job-1/in.png"
    seen: list[Progress] = []
    result = await client.run_prompt(cutout_prompt(image), timeout_s=30, on_progress=seen.append)

    assert result.prompt_id in posted_prompt_ids(double)
    assert result.outputs == {"4": [ImageRef("out_00001_.png", "job", "output")]}
    assert result.cached_nodes == []
    assert set(result.timings) == {"queue_s", "execute_s"}
    assert all(value >= 0 for value in result.timings.values())
    assert list(dict.fromkeys(p.node for p in seen)) == ["1", "2", "3", "4"]
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] < fractions[-1] <= 1

    data = await client.download_output(result.outputs["4"][0])
    output = Image.open(io.BytesIO(data))
    assert (output.mode, output.size) == ("RGBA", (16, 12))
    assert abs(output.getpixel((0, 0))[3] - 100) <= 1  # the alpha survived the graph


async def test_cached_rerun_still_reports_outputs(client: ComfyClient, double: ComfyDouble):
    image = await client.upload_image(rgba_png(), "in.png", "job-1")
    first = await client.run_prompt(cutout_prompt(image), timeout_s=30)
    again = await client.run_prompt(cutout_prompt(image), timeout_s=30)
    assert again.prompt_id != first.prompt_id
    assert sorted(again.cached_nodes) == ["1", "2", "3", "4"]
    assert again.outputs == first.outputs
    assert len(list((double.output_dir / "job").iterdir())) == 1  # nothing new written


async def test_http_400_is_workflow_invalid(client: ComfyClient):
    image = await client.upload_image(rgba_png(), "in.png", "")
    prompt = cutout_prompt(image, scale=100.0)
    with pytest.raises(JobError) as caught:
        await client.run_prompt(prompt, timeout_s=30)
    error = caught.value
    assert error.code is ErrorCode.WORKFLOW_INVALID
    assert "node 2 (ImageScaleBy)" in error.message
    assert "Value 100.0 bigger than max of 8.0 (scale_by)" in error.message
    assert "\n" not in error.message
    [node] = error.details["node_errors"]
    assert (node["node_id"], node["errors"][0]["type"]) == ("2", "value_bigger_than_max")

    prompt = cutout_prompt(image)
    prompt["2"]["class_type"] = "NoSuchNode"
    with pytest.raises(JobError) as caught:
        await client.run_prompt(prompt, timeout_s=30)
    assert caught.value.code is ErrorCode.WORKFLOW_INVALID
    assert "NoSuchNode does not exist" in caught.value.message


async def test_partial_node_errors_are_refused_and_the_prompt_dropped(
    client: ComfyClient, double: ComfyDouble
):
    image = await client.upload_image(rgba_png(), "in.png", "")
    prompt = cutout_prompt(image)
    prompt["9"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 1], "filename_prefix": "x"},
    }
    with pytest.raises(JobError) as caught:
        await client.run_prompt(prompt, timeout_s=30)
    assert caught.value.code is ErrorCode.WORKFLOW_INVALID
    assert "node 9 (SaveImage): Return type mismatch" in caught.value.message
    [prompt_id] = posted_prompt_ids(double)
    assert cleanup_calls(double, prompt_id) == ["delete", "interrupt"]


async def test_execution_error_is_node_error_without_traceback(client: ComfyClient):
    image = await client.upload_image(rgba_png(), "in.png", "")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SplitImageWithAlpha", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageToMask", "inputs": {"image": ["2", 0], "channel": "alpha"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "e"}},
    }
    with pytest.raises(JobError) as caught:
        await client.run_prompt(prompt, timeout_s=30)
    error = caught.value
    assert error.code is ErrorCode.NODE_ERROR
    assert error.details == {
        "node_id": "3",
        "node_type": "ImageToMask",
        "exception_type": "IndexError",
        "message": "index 3 is out of bounds for dimension 3 with size 3",
    }
    assert error.message.startswith("Node 3 (ImageToMask) failed: IndexError: index 3")
    assert "Traceback" not in error.message and 'File "' not in error.message


async def test_node_error_message_hides_server_paths(client: ComfyClient, double: ComfyDouble):
    image = await client.upload_image(b"\x89PNG but not an image", "broken.png", "job-2")
    with pytest.raises(JobError) as caught:
        await client.run_prompt(cutout_prompt(image), timeout_s=30)
    error = caught.value
    assert error.code is ErrorCode.NODE_ERROR
    assert error.details["exception_type"] == "PIL.UnidentifiedImageError"
    assert "broken.png" in error.message
    assert str(double.input_dir) not in error.message


async def test_timeout_interrupts_the_running_prompt(client: ComfyClient, double: ComfyDouble):
    # Node 2 runs until released, so the prompt is still running when the timeout fires,
    # however slow the machine; the 3 s only has to cover queueing the prompt.
    release = threading.Event()
    double.faults = Faults(hold={"2": release})
    image = await client.upload_image(rgba_png(), "in.png", "")
    try:
        with pytest.raises(JobError) as caught:
            await client.run_prompt(cutout_prompt(image), timeout_s=3)
    finally:
        release.set()
    assert caught.value.code is ErrorCode.TIMEOUT
    [prompt_id] = posted_prompt_ids(double)
    assert cleanup_calls(double, prompt_id) == ["delete", "interrupt"]
    # The interrupt lands once the slow node finishes: nothing after it runs.
    entry = await wait_for_history(client, prompt_id)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert not (double.output_dir / "job").exists()


async def test_timeout_removes_a_still_queued_prompt(client: ComfyClient, double: ComfyDouble):
    # The blocker runs until released: our prompt is still queued behind it when it times out.
    release = threading.Event()
    double.faults = Faults(hold={"blocker": release})
    image = await client.upload_image(rgba_png(), "in.png", "")
    blocker = {
        "blocker": {"class_type": "LoadImage", "inputs": {"image": image}},
        "save": {"class_type": "PreviewImage", "inputs": {"images": ["blocker", 0]}},
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        queued = await http.post(f"{double.base_url}/prompt", json={"prompt": blocker})
    blocker_id = queued.json()["prompt_id"]
    try:
        with pytest.raises(JobError) as caught:
            await client.run_prompt(cutout_prompt(image), timeout_s=0.3)
    finally:
        release.set()
    assert caught.value.code is ErrorCode.TIMEOUT
    [prompt_id] = [p for p in posted_prompt_ids(double) if p is not None]
    assert cleanup_calls(double, prompt_id) == ["delete", "interrupt"]
    await wait_for_history(client, blocker_id)
    assert await client.history(prompt_id) == {}  # removed before it ever ran


async def test_cancellation_interrupts_and_reraises(client: ComfyClient, double: ComfyDouble):
    release = threading.Event()  # node 2 runs until released: still running when we act
    double.faults = Faults(hold={"2": release})
    image = await client.upload_image(rgba_png(), "in.png", "")
    running = asyncio.Event()

    def progress(report: Progress) -> None:
        if report.node == "2":
            running.set()

    task = asyncio.create_task(
        client.run_prompt(cutout_prompt(image), timeout_s=30, on_progress=progress)
    )
    await asyncio.wait_for(running.wait(), 300)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    [prompt_id] = posted_prompt_ids(double)
    assert cleanup_calls(double, prompt_id) == ["delete", "interrupt"]
    entry = await wait_for_history(client, prompt_id)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_interrupt_by_someone_else_is_cancelled(client: ComfyClient, double: ComfyDouble):
    release = threading.Event()  # node 2 runs until released: still running when we act
    double.faults = Faults(hold={"2": release})
    image = await client.upload_image(rgba_png(), "in.png", "")
    running = asyncio.Event()

    def progress(report: Progress) -> None:
        if report.node == "2":
            running.set()

    prompt = cutout_prompt(image)
    task = asyncio.create_task(client.run_prompt(prompt, timeout_s=30, on_progress=progress))
    await asyncio.wait_for(running.wait(), 300)
    async with httpx.AsyncClient(trust_env=False) as http:
        await http.post(f"{double.base_url}/interrupt")  # a global interrupt
    release.set()
    with pytest.raises(JobError) as caught:
        await task
    assert caught.value.code is ErrorCode.CANCELLED


async def test_dropped_socket_reconnects_and_finishes(client: ComfyClient, double: ComfyDouble):
    double.faults = Faults(drop_ws_at="executing", slow={"2": 0.8})
    image = await client.upload_image(rgba_png(), "in.png", "")
    result = await client.run_prompt(cutout_prompt(image), timeout_s=30)
    assert result.outputs == {"4": [ImageRef("out_00001_.png", "job", "output")]}
    assert double.faults.drop_ws_at is None  # the drop did happen
    reconnects = [sid for sid in double.ws_connections if double.ws_connections.count(sid) > 1]
    assert reconnects, "the client should have reopened its socket with the same clientId"


async def test_frames_lost_while_reconnecting_are_recovered_from_history(
    client: ComfyClient, double: ComfyDouble
):
    # Output 4 is saved while the socket is down; output 6 waits behind a slow node.
    double.faults = Faults(drop_ws_at="executed", slow={"5": 0.5})
    image = await client.upload_image(rgba_png(), "in.png", "")
    prompt = cutout_prompt(image, prefix="first")
    prompt["5"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "scale_by": 0.5},
    }
    prompt["6"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["5", 0], "filename_prefix": "second"},
    }
    result = await client.run_prompt(prompt, timeout_s=30)
    assert double.faults.drop_ws_at is None
    assert result.outputs == {
        "4": [ImageRef("first_00001_.png", "", "output")],
        "6": [ImageRef("second_00001_.png", "", "output")],
    }


async def test_silent_socket_is_reconciled_from_history(double: ComfyDouble):
    double.faults = Faults(silent_from="execution_start")
    comfy = ComfyClient(double.base_url or "", idle_timeout_s=0.3)
    try:
        image = await comfy.upload_image(rgba_png(), "in.png", "")
        result = await comfy.run_prompt(cutout_prompt(image), timeout_s=30)
    finally:
        await comfy.aclose()
    assert result.outputs == {"4": [ImageRef("out_00001_.png", "job", "output")]}
    assert result.cached_nodes == []


async def test_binary_preview_frames_are_ignored(client: ComfyClient):
    image = await client.upload_image(rgba_png(), "in.png", "")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    result = await client.run_prompt(prompt, timeout_s=30)
    assert result.outputs == {}


async def test_http_500_on_prompt_is_unavailable(client: ComfyClient, double: ComfyDouble):
    double.faults = Faults(prompt_http_status=500)
    with pytest.raises(JobError) as caught:
        await client.run_prompt(cutout_prompt("in.png"), timeout_s=30)
    assert caught.value.code is ErrorCode.COMFYUI_UNAVAILABLE


async def test_unreachable_server_is_unavailable():
    comfy = ComfyClient(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    try:
        with pytest.raises(JobError) as caught:
            await comfy.run_prompt(cutout_prompt("in.png"), timeout_s=10)
        assert caught.value.code is ErrorCode.COMFYUI_UNAVAILABLE
        with pytest.raises(JobError) as caught:
            await comfy.system_stats()
        assert caught.value.code is ErrorCode.COMFYUI_UNAVAILABLE
        with pytest.raises(JobError) as caught:
            await comfy.upload_image(b"x", "x.png", "")
        assert caught.value.code is ErrorCode.COMFYUI_UNAVAILABLE
    finally:
        await comfy.aclose()


async def test_missing_output_is_an_error(client: ComfyClient):
    with pytest.raises(JobError) as caught:
        await client.download_output(ImageRef("nope.png"))
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot identify image file '/comfyui/input/job/x.png'",
            "cannot identify image file 'x.png'",
        ),
        ("No such file: /opt/models/upscale/a b.pth", "No such file: a b.pth"),
        ("see https://example.com/a/b for help", "see https://example.com/a/b for help"),
        (
            "index 3 is out of bounds for dimension 3 with size 3",
            "index 3 is out of bounds for dimension 3 with size 3",
        ),
        ("ratio 1/2/3 and ./rel/path.png", "ratio 1/2/3 and ./rel/path.png"),
    ],
)
def test_scrub_paths_keeps_only_file_names(text: str, expected: str):
    assert scrub_paths(text) == expected
