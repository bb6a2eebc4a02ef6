"""`python -m handler` through runpod's real SDK: --test_input and --rp_serve_api."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from handler.settings import REPO_ROOT
from tests.fakes.comfy_double import ComfyDouble
from tests.fakes.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3
from tests.fakes.worker_stack import callback_key, data_uri, payload
from tests.integration.test_handler_e2e import png_bytes, s3_object


def worker_env(double: ComfyDouble, s3: MotoS3) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(
        COMFYUI_URL=double.base_url,
        COMFYUI_INPUT_DIR=str(double.input_dir),
        COMFYUI_OUTPUT_DIR=str(double.output_dir),
        ENABLED_TYPES="jpeg_to_png,upscale_2k",
        S3_ENDPOINT_URL=s3.endpoint_url,
        S3_REGION=REGION,
        S3_ACCESS_KEY_ID=ACCESS_KEY_ID,
        S3_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        S3_ADDRESSING_STYLE="path",
        PYTHONUNBUFFERED="1",
    )
    return env


def job_input(s3: MotoS3) -> tuple[dict, str]:
    bucket = s3.create_bucket()
    _, key_b64 = callback_key()
    source = data_uri(png_bytes(Image.new("RGB", (40, 30), (0, 128, 255))))
    return payload(
        "jpeg_to_png", source, output_prefix=f"s3://{bucket}/out/", callback_hmac=key_b64
    ), bucket


def test_test_input_runs_one_job_and_exits(double, s3, tmp_path) -> None:
    job, _ = job_input(s3)
    proc = subprocess.run(
        [sys.executable, "-m", "handler", "--test_input", json.dumps({"input": job})],
        cwd=tmp_path,  # no test_input.json here: the flag is what runs
        env=worker_env(double, s3) | {"PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    key = "out/out_00.png"
    bucket = job["output_prefix"].removeprefix("s3://").split("/")[0]
    assert s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    logs = proc.stdout + proc.stderr
    assert job["auth"]["callback_hmac"] not in logs, "the per-job key must never be logged"
    assert "job finished" in logs and "SUCCEEDED" in logs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_worker(double, s3, tmp_path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handler",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        cwd=tmp_path,
        env=worker_env(double, s3) | {"PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # catches a hang only; start-up takes seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited: {proc.stderr.read()[-3000:]}")
        try:
            httpx.get(url + "/docs", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("hung: runpod's local API did not answer within 600 s")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=300)


def test_rp_serve_api_runs_jobs_over_http(served_worker, s3) -> None:
    job, _ = job_input(s3)
    queued = httpx.post(served_worker + "/run", json={"input": job}, timeout=10).json()
    assert queued["status"] == "IN_PROGRESS"
    # runpod's local API runs a /run job when its status is asked for (POST /status/{id}).
    status = httpx.post(f"{served_worker}/status/{queued['id']}", timeout=120).json()
    assert status["status"] == "COMPLETED", status
    output = status["output"]
    assert output["status"] == "SUCCEEDED" and output["job_id"] == job["job_id"]
    assert s3_object(s3, output["outputs"][0]["url"])[:8] == b"\x89PNG\r\n\x1a\n"

    bad = dict(job, job_id="not-a-uuid")
    queued = httpx.post(served_worker + "/run", json={"input": bad}, timeout=10).json()
    status = httpx.post(f"{served_worker}/status/{queued['id']}", timeout=60).json()
    assert status["status"] == "FAILED" and "job_id" in status["error"]
    assert "Traceback" not in json.dumps(status)


def test_signed_urls_and_keys_never_reach_the_logs(double, s3, tmp_path) -> None:
    from tests.fakes.http_server import LoopbackHTTPServer, Reply

    with LoopbackHTTPServer() as web:
        web.route("PUT", "/out/*", Reply(200))
        web.route("POST", "/hook", Reply(204))
        _, key_b64 = callback_key()
        source = data_uri(png_bytes(Image.new("RGB", (16, 16))))
        job = payload(
            "jpeg_to_png",
            source,
            output_prefix=web.url("/out/") + "?X-Amz-Signature=SIGSECRET123",
            webhook_url=web.url("/hook") + "?token=HOOKSECRET456",
            callback_hmac=key_b64,
        )
        env = worker_env(double, s3) | {
            "PYTHONPATH": str(REPO_ROOT),
            "ALLOW_HTTP_INPUTS": "true",
            "URL_ALLOWLIST": "127.0.0.0/8",
            "LOG_LEVEL": "DEBUG",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "handler", "--test_input", json.dumps({"input": job})],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert web.requests_for("POST", "/hook"), "the callback was delivered"
    logs = proc.stdout + proc.stderr
    for secret in ("SIGSECRET123", "HOOKSECRET456", key_b64):
        assert secret not in logs, f"{secret} leaked into the logs"
