"""The control plane (api_stub: migrate, a user, serve, dispatcher, reconciler) and the worker
(`python -m handler --rp_serve_api`) as processes, on the embedded defaults: SQLite and local
storage in the work folder, a fresh callback master key per run, everything on 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api_stub.settings import ApiSettings
from handler.settings import Settings as WorkerSettings

from .comfy import ComfyTarget
from .procs import Child, ChildFailed, Children, free_port, start_on_free_port, wait_http

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Api:
    url: str
    api_key: str
    processes: list[Child]


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any setting of ours, so the demo runs on its own
    embedded defaults whatever the shell exports (a stray STORAGE=s3 or RUNPOD_* included)."""
    ours = {name.upper() for name in (*ApiSettings.model_fields, *WorkerSettings.model_fields)}
    env = {
        key: value
        for key, value in environ.items()
        if key not in ours and not key.startswith(("RUNPOD_", "SIMPLYPNG_"))
    }
    python_path = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    no_proxy = [LOOPBACK, "localhost", env.get("NO_PROXY", "")]
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONPATH=":".join(p for p in python_path if p),
        NO_PROXY=",".join(p for p in no_proxy if p),
        no_proxy=",".join(p for p in no_proxy if p),
    )
    return env


def api_env(base: dict[str, str], *, workdir: Path, job_timeout_s: int) -> dict[str, str]:
    """Settings shared by every control-plane process (ports are added per process)."""
    data = workdir / "api"
    return base | {
        "DATABASE_URL": f"sqlite:///{data / 'simplypng.db'}",
        "STORAGE": "local",
        "LOCAL_STORAGE_DIR": str(data / "storage"),
        "CALLBACK_MASTER_KEY": secrets.token_urlsafe(48),
        "HOST": LOOPBACK,
        # runpod's local API (--rp_serve_api) stores a /run job and runs it inside the first
        # POST /status/{id}: the reconciler makes that call at once and waits for the job.
        "RUNPOD_STATUS_METHOD": "POST",
        "RUNPOD_STATUS_TIMEOUT_S": str(job_timeout_s + 60),
        "RECONCILE_AFTER_S": "0",
        "RECONCILE_EVERY_S": "900",
        "POLL_S": "0.5",
    }


def worker_env(
    base: dict[str, str], target: ComfyTarget, types: list[str], segmenter: str
) -> dict[str, str]:
    return (
        base
        | {
            "ENABLED_TYPES": ",".join(types),
            # Serves (and warms up) only the segmenter the demo's jobs ask for, so no other
            # segmentation model needs to be on the machine.
            "SEGMENTERS": segmenter,
            # Inputs come from, and outputs go to, the local API on loopback.
            "ALLOW_HTTP_INPUTS": "true",
            "URL_ALLOWLIST": "127.0.0.0/8",
        }
        | target.worker_env
    )


def start_worker(
    children: Children, env: dict[str, str], *, workdir: Path, deadline_s: float
) -> tuple[Child, int]:
    """Start `python -m handler --rp_serve_api` and wait until it serves; returns it and
    its port. It listens only after start-up (ComfyUI, workflow checks, warm-up)."""
    # Its own empty working folder: runpod's SDK looks for a test_input.json in the cwd.
    folder = workdir / "worker"
    folder.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> Child:
        argv = [sys.executable, "-m", "handler", "--rp_serve_api"]
        argv += ["--rp_api_host", LOOPBACK, "--rp_api_port", str(port)]
        run_env = dict(env)
        if "COMFYUI_DIR" in run_env:  # a ComfyUI child of its own: a fresh port per attempt
            run_env["COMFYUI_PORT"] = str(free_port())
        return children.start("worker", argv, env=run_env, cwd=folder)

    def wait(child: Child, port: int) -> None:
        wait_http(
            child,
            f"http://{LOOPBACK}:{port}/openapi.json",
            deadline_s=deadline_s,
            what="starting the worker (ComfyUI check and warm-up)",
            log_marker=f"running on http://{LOOPBACK}:{port} ",  # uvicorn's line
        )

    return start_on_free_port(start, wait)


def start_api(
    children: Children, env: dict[str, str], *, workdir: Path, worker_port: int, credits: int
) -> Api:
    """Migrate, create the demo user, then start serve (waiting for /healthz), a dispatcher
    and a reconciler, all pointed at the worker."""
    (workdir / "api").mkdir(parents=True, exist_ok=True)
    api = [sys.executable, "-m", "api_stub"]
    children.run("api-migrate", [*api, "migrate"], env=env, cwd=workdir)
    out = children.run_captured(
        "api-create-user",
        [*api, "create-user", "--credits", str(credits), "--name", "demo"],
        env=env,
    )
    api_key = _api_key(out)
    runpod = {"RUNPOD_ENDPOINT_URL": f"http://{LOOPBACK}:{worker_port}"}

    def start(port: int) -> Child:
        serve_env = env | runpod | _public(port)
        return children.start("api-serve", [*api, "serve"], env=serve_env, cwd=workdir)

    def wait(child: Child, port: int) -> None:
        wait_http(
            child,
            f"http://{LOOPBACK}:{port}/healthz",
            deadline_s=60,
            what="starting the API",
            log_marker=f"running on http://{LOOPBACK}:{port} ",  # uvicorn's line
        )

    serve, port = start_on_free_port(start, wait)
    loop_env = env | runpod | _public(port)
    processes = [
        serve,
        children.start("api-dispatcher", [*api, "dispatcher"], env=loop_env, cwd=workdir),
        children.start("api-reconciler", [*api, "reconciler"], env=loop_env, cwd=workdir),
    ]
    return Api(url=_public(port)["PUBLIC_BASE_URL"], api_key=api_key, processes=processes)


def _public(port: int) -> dict[str, str]:
    # The dispatcher derives callback and storage URLs from it, so every process shares it.
    return {"PORT": str(port), "PUBLIC_BASE_URL": f"http://{LOOPBACK}:{port}"}


def _api_key(output: str) -> str:
    for line in reversed(output.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("api_key"), str):
            return data["api_key"]
    raise ChildFailed("`python -m api_stub create-user` printed no api_key")
