"""All six workflows through the handler against a REAL ComfyUI, with the tiny test models.

Runs when COMFYUI_DIR (a ComfyUI checkout; COMFYUI_PYTHON names its interpreter) or
COMFYUI_URL (a running server that already has our node pack and models) is set. With
COMFYUI_DIR the test installs the node pack and tiny models into a temporary
--base-directory, so the checkout is left untouched.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handler.pipeline import run_job
from handler.quality.cases import cases_for
from handler.quality.checks import check_output
from handler.quality.scenes import scene
from handler.runtime import WorkerRuntime
from handler.settings import REPO_ROOT, Settings
from tests.fakes.real_models import require_u2netp
from tests.fakes.s3_server import MotoS3
from tests.fakes.worker_stack import build_tiny_models
from tests.integration.test_handler_e2e import _check, product_job, s3_object
from tests.integration.test_quality import outputs, scenes_job

pytestmark = [pytest.mark.real_comfyui, pytest.mark.torch]

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_URL = os.environ.get("COMFYUI_URL")
if not (COMFYUI_DIR or COMFYUI_URL):
    pytest.skip(
        "no real ComfyUI: set COMFYUI_DIR (a ComfyUI checkout, with COMFYUI_PYTHON) or "
        "COMFYUI_URL (a running server with the node pack) to run these tests",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3) -> Iterator[WorkerRuntime]:
    env = Settings.from_env()
    overrides: dict[str, object] = {
        "url_allowlist": ["127.0.0.0/8"],
        "allow_http_inputs": True,
        "comfyui_start_timeout_s": 240,
    }
    if COMFYUI_DIR:
        base = tmp_path_factory.mktemp("comfy-base")
        shutil.copytree(
            REPO_ROOT / "comfy_nodes" / "simplypng", base / "custom_nodes" / "simplypng"
        )
        lock = build_tiny_models(base / "models")
        os.environ["SIMPLYPNG_MODELS_LOCK"] = str(lock)  # read by the node pack in ComfyUI
        overrides |= {
            "comfyui_url": None,
            "comfyui_dir": Path(COMFYUI_DIR),
            "comfyui_port": 8199,
            "comfyui_input_dir": base / "input",
            "comfyui_output_dir": base / "output",
            "comfyui_extra_args": [*env.comfyui_extra_args, "--cpu", "--base-directory", str(base)]
            if "--cpu" not in env.comfyui_extra_args
            else [*env.comfyui_extra_args, "--base-directory", str(base)],
            "models_lock": lock,
        }
    configured = {
        k: v for k, v in env.model_dump().items() if v is not None and not k.startswith("s3_")
    }
    settings = s3.settings(**(configured | overrides))
    worker = WorkerRuntime(settings)
    worker.start()  # validates every workflow against the real /object_info and warms up
    yield worker
    worker.stop()
    os.environ.pop("SIMPLYPNG_MODELS_LOCK", None)


CASES = [
    ("jpeg_to_png", {}),
    ("jpeg_to_png", {"transparent": "color", "key_color": "#e6e6e6", "tolerance": 10}),
    ("jpeg_to_png", {"transparent": "subject"}),
    ("bg_remove", {"halo": 2, "shadow": "soft"}),
    ("cutout_subject", {"padding": 8, "padding_unit": "px", "min_region": 0}),
    (
        "object_remove",
        {"regions": [{"kind": "rect", "x": 10, "y": 10, "w": 20, "h": 20}], "dilate": 4},
    ),
    ("white_bg_ecomm", {"fill": 0.85}),
    ("upscale_2k", {}),
]


@pytest.mark.parametrize(("job_type", "params"), CASES)
def test_workflow_runs_in_real_comfyui(runtime: WorkerRuntime, s3: MotoS3, job_type, params):
    job, source = product_job(s3.create_bucket(), job_type, params, timeout_s=600)
    assert runtime.ctx is not None
    result = runtime.call(run_job(runtime.ctx, job))
    assert result["status"] == "SUCCEEDED", result
    assert result["metrics"]["comfyui_version"] not in (None, "0.3.64-double")
    [output] = result["outputs"]
    with Image.open(io.BytesIO(s3_object(s3, output["url"]))) as image:
        image.load()
        _check(job_type, image, source)
        if job_type == "jpeg_to_png" and params.get("transparent") == "color":
            alpha = np.asarray(image)[..., 3]
            assert alpha[0, 0] == 0 and alpha[48, 48] == 255  # background keyed, subject kept


@pytest.mark.parametrize("case", cases_for("u2netp"), ids=lambda case: case.job_type)
def test_quality_suite_with_the_real_u2netp_in_real_comfyui(runtime, s3, case) -> None:
    """The quality suite's cases, checks and thresholds, on a real ComfyUI (onnxruntime there)."""
    require_u2netp()
    scenes = [scene(name) for name in case.scenes]
    assert runtime.ctx is not None
    result = runtime.call(run_job(runtime.ctx, scenes_job(s3.create_bucket(), case, scenes)))
    assert result["status"] == "SUCCEEDED", result
    assert [m["name"] for m in result["metrics"]["models"]] == ["u2netp"]
    problems = [
        problem
        for scene, image in zip(scenes, outputs(s3, result), strict=True)
        for problem in check_output(case.job_type, case.params, scene, image)
    ]
    assert not problems, "\n".join(problems)
