"""Start logic against the ComfyUI test double: readiness, workflow validation, warm-up."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from handler.runtime import StartupError, WorkerRuntime
from handler.settings import REPO_ROOT, Settings
from tests.fakes.comfy_double import ComfyDouble, Faults, free_port, serve_in_thread
from tests.fakes.real_models import find_u2netp
from tests.fakes.stranger import stranger_on


def test_attach_validate_and_warm_up_every_type(double: ComfyDouble) -> None:
    before = len([r for r in double.requests if r.get("path") == "/prompt"])
    # Both segmenters when the real u2netp was fetched (CI), else BiRefNet's stand-in only.
    segmenters = ["birefnet", "u2netp"] if find_u2netp() is not None else ["birefnet"]
    settings = Settings(
        comfyui_url=double.base_url,
        comfyui_input_dir=double.input_dir,
        comfyui_output_dir=double.output_dir,
        segmenters=segmenters,
    )
    runtime = WorkerRuntime(settings)
    try:
        ctx = runtime.start()
        assert set(ctx.registry) == {
            "bg_remove",
            "cutout_subject",
            "object_remove",
            "white_bg_ecomm",
            "upscale_2k",
            "jpeg_to_png",
        }
        assert ctx.comfyui_version == "0.3.64-double"
        prompts = [r for r in double.requests if r.get("path") == "/prompt"][before:]
        # One warm-up prompt per enabled type, and one more per further segmenter.
        assert len(prompts) == 6 + len(segmenters) - 1
        used = {
            node["inputs"]["model"]
            for prompt in prompts
            for node in prompt["graph"].values()
            if node["class_type"] == "SimplyPNGSegment"
        }
        assert used == set(segmenters), "every served segmenter is loaded before the first job"
        assert runtime.health()["state"] == "attached"
        assert not list((double.input_dir / "simplypng").glob("warmup-*"))
    finally:
        runtime.stop()


def test_refuses_to_start_when_a_node_is_missing(tmp_path: Path) -> None:
    bare = ComfyDouble(tmp_path / "bare")  # no node pack installed
    with serve_in_thread(bare):
        runtime = WorkerRuntime(Settings(comfyui_url=bare.base_url, warmup=False))
        with pytest.raises(StartupError) as info:
            runtime.start()
        runtime.stop()
    message = str(info.value)
    assert "SimplyPNGMatte" in message and "not installed" in message
    assert "'Matte'" in message  # names the node by its title


def test_only_enabled_types_are_validated(tmp_path: Path) -> None:
    bare = ComfyDouble(tmp_path / "bare")
    with serve_in_thread(bare):
        runtime = WorkerRuntime(
            Settings(comfyui_url=bare.base_url, enabled_types=["jpeg_to_png"], warmup=False)
        )
        with pytest.raises(StartupError, match="SimplyPNGColourKey"):
            runtime.start()  # its colour/subject variants need the pack
        runtime.stop()


def test_warm_up_failure_refuses_to_start(double: ComfyDouble) -> None:
    double.faults = Faults(fail={"SimplyPNGSegment": "CUDA error: no kernel image"})
    runtime = WorkerRuntime(Settings(comfyui_url=double.base_url))
    try:
        with pytest.raises(StartupError, match="warm-up failed: NODE_ERROR"):
            runtime.start()
    finally:
        double.faults = Faults()
        runtime.stop()


def test_child_comfyui_that_never_gets_ready_is_reported(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text(
        textwrap.dedent("""
        import time
        print("pretending to load models", flush=True)
        time.sleep(60)
    """)
    )
    settings = Settings(
        comfyui_dir=comfy,
        comfyui_python="python3",
        comfyui_port=free_port(),  # never a ComfyUI that happens to run on 8188
        comfyui_start_timeout_s=1.5,
        workflows_dir=REPO_ROOT / "workflows",
    )
    runtime = WorkerRuntime(settings)
    with pytest.raises(StartupError, match="ComfyUI did not start"):
        runtime.start()
    runtime.stop()


def test_a_stranger_on_the_child_port_is_never_validated_against(tmp_path: Path) -> None:
    """Child mode with COMFYUI_PORT held by another server that answers /system_stats (as a
    leftover ComfyUI on 8188 would): the worker refuses to start, naming the port, and never
    validates workflows or warms up against that server."""
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("raise SystemExit('the worker must not start me')\n")
    with stranger_on() as stranger:
        settings = Settings(
            comfyui_dir=comfy,
            comfyui_python="python3",
            comfyui_port=stranger.port,
            workflows_dir=REPO_ROOT / "workflows",
        )
        runtime = WorkerRuntime(settings)
        with pytest.raises(StartupError) as info:
            runtime.start()
        runtime.stop()
    message = str(info.value)
    assert message.startswith("ComfyUI did not start: ")
    assert f"port {stranger.port} on 127.0.0.1 is already in use" in message
    assert "set COMFYUI_PORT to a free port" in message
    assert stranger.requested == []  # no /object_info, no /prompt: nothing trusted it


def test_without_comfyui_configured_the_reason_is_clear() -> None:
    runtime = WorkerRuntime(Settings(warmup=False))
    with pytest.raises(StartupError, match=r"COMFYUI_URL.*COMFYUI_DIR"):
        runtime.start()
    runtime.stop()
