"""Fixtures for the worker's integration tests: the ComfyUI test double running our node pack
with tiny models, moto's S3 server, a loopback web server, and a ready WorkerContext."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handler.comfy.client import ComfyClient
from handler.inputs import input_s3_client_factory
from handler.models_lock import ModelsLock
from handler.pipeline import WorkerContext
from handler.settings import ALL_TYPES, REPO_ROOT, Settings
from handler.storage import output_s3_client_factory
from handler.url_guard import make_http_client
from handler.workflows import load_registry
from tests.fakes.comfy_double import ComfyDouble, Faults, serve_in_thread
from tests.fakes.http_server import LoopbackHTTPServer, Reply
from tests.fakes.s3_server import MotoS3, moto_s3_server
from tests.fakes.worker_stack import build_tiny_models


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    from simplypng.models import registry

    models_dir = tmp_path_factory.mktemp("models")
    lock = build_tiny_models(models_dir)
    registry.configure(models_dir=models_dir, lock_path=lock)
    yield models_dir, lock
    registry.configure()


@pytest.fixture(scope="session")
def double(models, tmp_path_factory) -> Iterator[ComfyDouble]:
    models_dir, _ = models
    server = ComfyDouble(
        tmp_path_factory.mktemp("comfy"),
        models_dir=models_dir,
        node_packs=[REPO_ROOT / "comfy_nodes" / "simplypng"],
    )
    with serve_in_thread(server) as running:
        yield running


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoS3]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def web() -> Iterator[LoopbackHTTPServer]:
    with LoopbackHTTPServer() as server:
        server.route("POST", "/hook", Reply(204))
        yield server


@pytest.fixture
def settings(s3: MotoS3):
    return s3.settings(
        url_allowlist=["127.0.0.0/8"],
        allow_http_inputs=True,
        callback_backoff_s=0.01,
        callback_max_attempts=2,
        upload_max_attempts=2,
        fetch_max_attempts=2,
        comfyui_idle_timeout_s=5,
    )


async def make_context(settings: Settings, double: ComfyDouble, lock: Path) -> WorkerContext:
    """A WorkerContext on the double; the HTTP hand-over gets no view of its folders."""
    comfy = ComfyClient(double.base_url, idle_timeout_s=settings.comfyui_idle_timeout_s)
    shared_folders = settings.comfyui_handover != "http"
    return WorkerContext(
        settings=settings,
        comfy=comfy,
        registry=load_registry(REPO_ROOT / "workflows", ALL_TYPES),
        http=make_http_client(settings),
        callback_http=httpx.AsyncClient(),
        models=ModelsLock.load(lock),
        s3_inputs=input_s3_client_factory(settings),
        s3_outputs=output_s3_client_factory(settings),
        comfyui_version=await comfy.comfyui_version(),
        input_dir=double.input_dir if shared_folders else None,
        output_dir=double.output_dir if shared_folders else None,
    )


async def close_context(context: WorkerContext) -> None:
    await context.http.aclose()
    await context.callback_http.aclose()
    await context.comfy.aclose()


@pytest.fixture
async def ctx(settings, double: ComfyDouble, models) -> WorkerContext:
    context = await make_context(settings, double, models[1])
    yield context
    await close_context(context)
    double.faults = Faults()
