"""What the worker drives: the ComfyUI test double with tiny models (--double), or a real
ComfyUI 0.3.64 (COMFYUI_DIR, else installed into the work folder) with the pinned models
(MODELS_DIR, else fetched by scripts/fetch_models.py).

Either way only the models the demo's jobs run are prepared (models_needed: each type's
binding resolved with its sample's params), and u2netp, the real segmenter every checkout has
after `bash scripts/bootstrap.sh`, comes from the checkout's models/ folder: no download, so it
works offline too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from handler.models_lock import DEFAULT_LOCK_PATH, LockEntry, load_lock
from handler.params import validate_params
from handler.workflows import load_registry

from .procs import Child, ChildFailed, Children, free_port, start_on_free_port, wait_http

log = logging.getLogger("demo")

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
NODE_PACK = REPO_ROOT / "comfy_nodes" / "simplypng"
WORKFLOWS_DIR = REPO_ROOT / "workflows"
U2NETP = "u2netp"  # the models.lock name of the real segmenter scripts/bootstrap.sh fetches
# Kept equal to the Dockerfile's COMFYUI_REPO / COMFYUI_REF / COMFYUI_COMMIT (tested).
COMFYUI_REPO = "https://github.com/Comfy-Org/ComfyUI.git"
COMFYUI_REF = "v0.3.64"
COMFYUI_COMMIT = "a125cd84"
INSTALLED_MARK = ".simplypng-demo-installed"
# Every Python package of the worker image, == pinned (docker/lockreqs.py writes it).
WORKER_LOCK = REPO_ROOT / "docker" / "requirements" / "worker.txt"
OFFLINE_HINT = (
    "Without network access, point the demo at what you have: COMFYUI_DIR=<ComfyUI 0.3.64 "
    "checkout> and MODELS_DIR=<models folder>, or run `bash scripts/demo.sh --double` (test "
    "double and tiny models, no downloads)."
)


class SetupError(RuntimeError):
    """The demo cannot prepare ComfyUI or the models; the message says what to do."""


@dataclass(frozen=True)
class ComfyTarget:
    """How the worker reaches ComfyUI, as worker environment variables."""

    description: str
    worker_env: dict[str, str] = field(default_factory=dict)


# --- which models -------------------------------------------------------------------------


def models_needed(params_by_type: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The models.lock names of the models the jobs will run: each type's binding resolved with
    its params (e.g. segmenter=u2netp picks u2netp, transparent=subject adds a segmenter)."""
    registry = load_registry(WORKFLOWS_DIR, list(params_by_type))
    return {
        name
        for job_type, params in params_by_type.items()
        for name in registry[job_type].models_for(validate_params(job_type, dict(params)))
    }


def require_u2netp() -> Path:
    """The checkout's verified u2netp file; SetupError naming scripts/bootstrap.sh without it."""
    from tests.fakes.real_models import MISSING_U2NETP, find_u2netp

    path = find_u2netp()
    if path is None:
        raise SetupError(
            f"{MISSING_U2NETP}. The demo's mask-based jobs run it (--segmenter u2netp, the "
            "default); `bash scripts/demo.sh` runs bootstrap first."
        )
    return path


def _entries(models: Iterable[str]) -> list[LockEntry]:
    wanted = set(models)
    return [entry for entry in load_lock(DEFAULT_LOCK_PATH) if entry.model in wanted]


def hosts_to_reach(
    *, comfyui_to_clone: Path | None, fetch_into: Path | None, models: Iterable[str]
) -> list[str]:
    """The hosts the real mode would download from: GitHub when ComfyUI must be cloned into
    `comfyui_to_clone`, and the hosts of the models not yet in `fetch_into` at their pinned
    size (u2netp comes from the checkout, never from the network)."""
    hosts = []
    if comfyui_to_clone is not None and not (comfyui_to_clone / INSTALLED_MARK).is_file():
        hosts.append(urlsplit(COMFYUI_REPO).hostname or "github.com")
    if fetch_into is not None:
        for entry in _entries(set(models) - {U2NETP}):
            path = fetch_into / entry.dest
            if not (path.is_file() and path.stat().st_size == entry.size):
                hosts.append(urlsplit(entry.url).hostname or "")
    return list(dict.fromkeys(host for host in hosts if host))


# --- the test double ------------------------------------------------------------------------


def build_tiny_models(models_dir: Path) -> Path:
    """Random-weight models in the real formats, built once per work folder; returns the lock."""
    from tests.fakes.worker_stack import LAMA_DEST
    from tests.fakes.worker_stack import build_tiny_models as build

    lock = models_dir / "models.lock"
    lama = models_dir / LAMA_DEST
    if lock.is_file() and lama.is_file():
        # The lock is written last, so LaMa (the slow one) is whole: copy it onto itself.
        return build(models_dir, lama_source=lama)
    lama.unlink(missing_ok=True)
    return build(models_dir)


def start_double(children: Children, workdir: Path, env: dict[str, str]) -> tuple[Child, str]:
    """Build the tiny models, start the ComfyUI test double as a process and wait for it;
    returns it and its URL."""
    models_dir = workdir / "tiny-models"
    lock = build_tiny_models(models_dir)
    base = workdir / "comfy-double"

    def start(port: int) -> Child:
        argv = [sys.executable, "-m", "tests.fakes.comfy_double", "--port", str(port)]
        argv += ["--base-directory", str(base), "--node-pack", str(NODE_PACK)]
        argv += ["--models-directory", str(models_dir)]
        double_env = env | {"SIMPLYPNG_MODELS_LOCK": str(lock)}
        return children.start("comfyui-double", argv, env=double_env, cwd=workdir)

    def wait(child: Child, port: int) -> None:
        wait_http(
            child,
            f"http://{LOOPBACK}:{port}/system_stats",
            deadline_s=600,  # catches a hang only: a loaded machine may need minutes
            what="starting the ComfyUI double",
            log_marker=f"go to: http://{LOOPBACK}:{port}\n",
        )

    child, port = start_on_free_port(start, wait)
    return child, f"http://{LOOPBACK}:{port}"


def double_target(workdir: Path, url: str) -> ComfyTarget:
    base = workdir / "comfy-double"
    # A tiny model whose weights are models.lock's own file is the real one (u2netp).
    tiny = [e for e in load_lock(workdir / "tiny-models" / "models.lock") if e.role == "weights"]
    pinned = {e.model: e.sha256 for e in load_lock(DEFAULT_LOCK_PATH) if e.role == "weights"}
    real = sorted(e.model for e in tiny if e.sha256 == pinned.get(e.model))
    also = f", plus the real {', '.join(real)}" if real else ""
    return ComfyTarget(
        description=f"ComfyUI test double at {url} with random-weight tiny models{also}",
        worker_env={
            "COMFYUI_URL": url,
            "COMFYUI_INPUT_DIR": str(base / "input"),
            "COMFYUI_OUTPUT_DIR": str(base / "output"),
            "MODELS_LOCK": str(workdir / "tiny-models" / "models.lock"),
        },
    )


# --- a real ComfyUI -------------------------------------------------------------------------


def install_comfyui(children: Children, target: Path, env: dict[str, str]) -> Path:
    """Clone ComfyUI at the pinned tag into `target` and install its requirements into this
    virtualenv at the worker image's versions (torch stays at the version already installed;
    torchaudio is left out)."""
    if (target / INSTALLED_MARK).is_file():
        log.info("    ComfyUI %s already installed in %s", COMFYUI_REF, target)
        return target
    if not (target / "main.py").is_file():
        if shutil.which("git") is None:
            raise SetupError("git is not installed, so ComfyUI cannot be cloned. " + OFFLINE_HINT)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        log.info("    cloning %s at %s", COMFYUI_REPO, COMFYUI_REF)
        try:
            children.run(
                "git-clone-comfyui",
                [
                    "git",
                    "clone",
                    "--depth",
                    "1",
                    "--branch",
                    COMFYUI_REF,
                    COMFYUI_REPO,
                    str(partial),
                ],
                env=env | {"GIT_TERMINAL_PROMPT": "0"},
                timeout_s=900,
                echo=True,
            )
        except ChildFailed as exc:
            raise SetupError(f"could not clone ComfyUI: {exc}\n{OFFLINE_HINT}") from None
        head = subprocess.run(
            ["git", "-C", str(partial), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not head.startswith(COMFYUI_COMMIT):
            raise SetupError(
                f"ComfyUI {COMFYUI_REF} resolved to {head or '?'}, expected {COMFYUI_COMMIT}...: "
                "the tag moved; refusing an unpinned ComfyUI"
            )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    _install_requirements(children, target, env)
    (target / INSTALLED_MARK).write_text(f"{COMFYUI_REF}\n", encoding="utf-8")
    return target


def _install_requirements(children: Children, comfy: Path, env: dict[str, str]) -> None:
    build = comfy / ".simplypng-demo"
    build.mkdir(exist_ok=True)
    pins = build / "torch-constraints.txt"
    pins.write_text(
        "".join(
            f"{name}=={importlib.metadata.version(name)}\n"
            for name in ("torch", "torchvision")
            if _installed(name)
        ),
        encoding="utf-8",
    )
    # The worker image's lock, as constraints: ComfyUI's requirements and their dependencies
    # install at the image's versions (its hashes are left out: this virtualenv's platform and
    # Python may differ from the image's, and torch is whatever this virtualenv already has).
    image_pins = build / "image-pins.txt"
    image_pins.write_text(
        "".join(
            f"{pin}\n"
            for pin in _lock_pins(WORKER_LOCK.read_text(encoding="utf-8"))
            if not _is_requirement(pin, "torch") and not _is_requirement(pin, "torchvision")
        ),
        encoding="utf-8",
    )
    requirements = build / "requirements.txt"
    lines = (comfy / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements.write_text(
        "\n".join(line for line in lines if not _is_requirement(line, "torchaudio")) + "\n",
        encoding="utf-8",
    )
    log.info("    installing ComfyUI's requirements into %s (a few minutes)", sys.prefix)
    pip = [sys.executable, "-m", "pip", "install", "--progress-bar", "off"]
    try:
        children.run(
            "pip-install-comfyui",
            [
                *pip,
                "-c",
                str(image_pins),
                "-c",
                str(pins),
                "-r",
                str(requirements),
            ],
            env=env,
            timeout_s=1800,
            echo=True,
        )
        # As in the image: this non-commercial package must never be importable.
        children.run(
            "pip-uninstall-extra-arches",
            [sys.executable, "-m", "pip", "uninstall", "-y", "spandrel_extra_arches"],
            env=env,
            timeout_s=120,
        )
    except ChildFailed as exc:
        raise SetupError(
            f"could not install ComfyUI's requirements: {exc}\n{OFFLINE_HINT}"
        ) from None


def _lock_pins(text: str) -> list[str]:
    """The `name==version` of each package of a hashed lock (docker/requirements/*.txt)."""
    return [
        line.split()[0]
        for line in text.splitlines()
        if line[:1].isalnum() and "==" in line.split()[0]
    ]


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _is_requirement(line: str, name: str) -> bool:
    head = line.strip().lower()
    return head.startswith(name) and (len(head) == len(name) or not head[len(name)].isalnum())


def link_node_pack(comfy: Path) -> None:
    """Make our node pack a custom node of `comfy` (a symlink to this checkout's pack)."""
    link = comfy / "custom_nodes" / "simplypng"
    if link.is_symlink() and link.resolve() == NODE_PACK.resolve():
        return
    if link.exists() or link.is_symlink():
        log.warning("    %s exists and is not this checkout's node pack: using it as it is", link)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(NODE_PACK, target_is_directory=True)
    log.info("    linked the node pack: %s -> %s", link, NODE_PACK)


def prepare_models(
    children: Children,
    comfy: Path,
    models_dir: Path | None,
    models: set[str],
    env: dict[str, str],
) -> None:
    """Put the `models` (models.lock names) into ComfyUI's models folder, where the node pack
    reads them: u2netp copied from the checkout's models/; the others fetched (verified by
    sha256), or verified in MODELS_DIR and linked from there."""
    comfy_models = comfy / "models"
    if U2NETP in models:
        _copy_u2netp(comfy_models)
    rest = sorted(models - {U2NETP})
    if not rest:
        return
    fetch = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "fetch_models.py"),
        "--models",
        ",".join(rest),
    ]
    if models_dir is None:
        log.info("    fetching %s (verified by sha256)", ", ".join(rest))
        try:
            children.run(
                "fetch-models",
                [*fetch, "--dest", str(comfy_models)],
                env=env,
                timeout_s=7200,
                echo=True,
            )
        except ChildFailed as exc:
            raise SetupError(f"could not fetch the models: {exc}\n{OFFLINE_HINT}") from None
        return
    log.info("    verifying %s in MODELS_DIR=%s", ", ".join(rest), models_dir)
    try:
        children.run(
            "verify-models",
            [*fetch, "--dest", str(models_dir), "--verify-only"],
            env=env,
            timeout_s=1800,
            echo=True,
        )
    except ChildFailed as exc:
        raise SetupError(
            f"MODELS_DIR={models_dir} lacks verified models ({', '.join(rest)}): {exc}\n"
            f"Fill it with: python scripts/fetch_models.py --dest {models_dir} "
            f"--models {','.join(rest)}"
        ) from None
    if models_dir.resolve() == comfy_models.resolve():
        return
    linked = 0
    for entry in _entries(rest):
        target = comfy_models / entry.dest
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((models_dir / entry.dest).resolve())
        linked += 1
    if linked:
        log.info("    linked %d model file(s) from MODELS_DIR into %s", linked, comfy_models)


def _copy_u2netp(comfy_models: Path) -> None:
    """Copy the checkout's verified u2netp into ComfyUI's models folder unless the same bytes
    are there already (a stale file or link is replaced)."""
    source = require_u2netp()
    [entry] = [e for e in _entries([U2NETP]) if e.role == "weights"]
    target = comfy_models / entry.dest
    if target.is_file() and _sha256(target) == entry.sha256:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(source, partial)
    if target.is_symlink() or target.exists():
        target.unlink()
    partial.rename(target)
    log.info("    copied u2netp (the real model) from %s into %s", source, target)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_target(comfy: Path, *, cpu: bool) -> ComfyTarget:
    env = {
        "COMFYUI_DIR": str(comfy),
        "COMFYUI_PYTHON": sys.executable,
        "COMFYUI_PORT": str(free_port()),  # the worker's supervisor reports a clash clearly
        "COMFYUI_START_TIMEOUT_S": "600",
    }
    if cpu:
        env["COMFYUI_EXTRA_ARGS"] = "--cpu"
    where = "on the CPU (no GPU found)" if cpu else "on the GPU"
    return ComfyTarget(description=f"ComfyUI {COMFYUI_REF} in {comfy}, {where}", worker_env=env)
