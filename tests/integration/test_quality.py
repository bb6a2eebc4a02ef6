"""The quality suite: real masks from the real u2netp, through the real handler and the ComfyUI
test double, on synthetic product photos with known ground truth (handler/quality/scenes.py).

Each mask-based type runs as one job whose inputs are the scenes (one batch, one prompt). The
checks and thresholds are handler/quality/checks.py's, the ones the image's self-test applies.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from handler.pipeline import run_job
from handler.quality.cases import QualityCase, cases_for
from handler.quality.checks import check_output
from handler.quality.scenes import Scene, scene
from tests.fakes.real_models import require_u2netp
from tests.fakes.s3_server import MotoS3
from tests.fakes.worker_stack import callback_key, data_uri, payload

pytestmark = pytest.mark.torch

CASES = cases_for("u2netp")


@pytest.fixture(scope="module", autouse=True)
def real_u2netp() -> None:
    require_u2netp()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def scenes_job(bucket: str, case: QualityCase, scenes: list[Scene]) -> dict:
    _, key = callback_key()
    job = payload(
        case.job_type,
        data_uri(png(scenes[0].image)),
        params=case.params,
        output_prefix=f"s3://{bucket}/q/",
        callback_hmac=key,
        timeout_s=600,
    )
    job["inputs"] = [{"url": data_uri(png(scene.image))} for scene in scenes]
    return job


def outputs(s3: MotoS3, result: dict) -> list[Image.Image]:
    images = []
    for output in result["outputs"]:
        bucket, key = output["url"].removeprefix("s3://").split("/", 1)
        data = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            images.append(image)
    return images


@pytest.mark.parametrize("case", CASES, ids=[case.job_type for case in CASES])
async def test_real_u2netp_meets_the_quality_bar(ctx, s3, case: QualityCase) -> None:
    scenes = [scene(name) for name in case.scenes]
    result = await run_job(ctx, scenes_job(s3.create_bucket(), case, scenes))

    assert result["status"] == "SUCCEEDED", result
    [model] = result["metrics"]["models"]
    assert model["name"] == "u2netp" and model["sha256"].startswith("309c8469")
    images = outputs(s3, result)
    assert len(images) == len(scenes)
    problems = [
        problem
        for scene, image in zip(scenes, images, strict=True)
        for problem in check_output(case.job_type, case.params, scene, image)
    ]
    assert not problems, "\n".join(problems)
