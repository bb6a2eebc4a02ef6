"""The Dockerfile, read statically (CI has no Docker engine), and the build helpers it runs.

The Dockerfile must pin every image, its syntax frontend and every Python package (through the
hashed locks of docker/requirements/), install ComfyUI v0.3.64 without spandrel_extra_arches,
bake one layer per models.lock model through scripts/fetch_models.py (optionally from a mirror),
stay offline at run time, gate the final image on the self-test stage, and start the api image
on an empty volume.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from dockerfile_parse import DockerfileParser

from api_stub.settings import ApiSettings
from handler.models_lock import LockError, parse_lock
from handler.settings import ALL_TYPES
from handler.settings import Settings as WorkerSettings
from tests.fakes.scripts import load_file

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK_RAW = json.loads((ROOT / "models.lock").read_text(encoding="utf-8"))


def _load(name: str) -> ModuleType:
    """A script from docker/ (not a package: the build runs them by path)."""
    return load_file(ROOT / "docker" / f"{name}.py", f"_docker_{name}")


lockutil = _load("lockutil")
pyproject_reqs = _load("pyproject_reqs")
verify_image = _load("verify_image")
lockreqs = _load("lockreqs")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == kind]


def _parse() -> tuple[dict[str, str], list[Stage]]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    parents = iter(parser.parent_images)  # FROM images with global ARGs substituted
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            words = instr["value"].split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: {instr}"
            stages.append(Stage(name=words[2], base=next(parents)))
        elif stages:
            stages[-1].instructions.append(instr)
        elif instr["instruction"] == "ARG":
            name, _, default = instr["value"].partition("=")
            global_args[name] = default
    return global_args, stages


ARGS, STAGES = _parse()
BY_NAME = {stage.name: stage for stage in STAGES}


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", req.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


NODE_PINS = _pins(PYPROJECT["project"]["optional-dependencies"]["nodes"])
BASE_PINS = _pins(PYPROJECT["project"]["dependencies"])


# --- pinning ---------------------------------------------------------------------------------


def test_every_external_image_has_an_exact_version_tag():
    # `scratch` is no image (an empty file system): the models-mirror stage starts from it.
    external = [s.base for s in STAGES if s.base not in BY_NAME and s.base != "scratch"]
    assert external, "no FROM names an external image"
    for image in external:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image} is not pinned"


# docker/dockerfile:1.7.1 (the same image as the 1.7 tag), as quoted by many public Dockerfiles
# that pin it (e.g. `# syntax=docker/dockerfile:1.7.1@sha256:a57df69d...`); a moved tag cannot
# change the frontend, and a wrong digest fails the build at its first line.
FRONTEND = "docker/dockerfile:1.7.1@sha256:a57df69d0ea827fb7266491f2813635de6f17269be881f696fbfdf2d83dda33e"


def test_syntax_frontend_is_pinned_by_digest():
    first = DOCKERFILE.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# syntax={FRONTEND}"
    assert re.fullmatch(r"docker/dockerfile:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", FRONTEND)


def _flags(value: str) -> set[str]:
    words = shlex.split(value.replace("\\\n", " "))
    flags = set()
    for word in words:
        if not word.startswith("--"):
            break
        flags.add(word.split("=", 1)[0])
    return flags


def test_dockerfile_uses_only_stable_syntax_of_the_pinned_frontend():
    """Only the stable flags of dockerfile 1.4+ (no -labs channel features such as COPY
    --parents/--exclude or RUN --security): both the pinned 1.7.1 frontend and the built-in
    frontend of a current BuildKit (Docker 26+) read them, so the file builds either way."""
    stable = {
        "RUN": {"--mount", "--network"},
        "COPY": {"--from", "--link", "--chmod", "--chown"},
        "ADD": set(),
    }
    seen: set[str] = set()
    for stage in STAGES:
        for kind, allowed in stable.items():
            for value in stage.of(kind):
                flags = _flags(value)
                assert flags <= allowed, f"{stage.name}: {kind} {sorted(flags - allowed)}"
                seen |= {f"{kind} {flag}" for flag in flags}
    assert "labs" not in FRONTEND
    # what the comment at the top of the Dockerfile names
    assert {"RUN --mount", "RUN --network", "COPY --link", "COPY --chmod"} <= seen


def test_cuda_base_and_torch_build_are_the_same_cuda_line():
    base = ARGS["BASE_IMAGE"]
    assert base.startswith("nvidia/cuda:"), base
    cuda_version = base.split(":", 1)[1].split("-", 1)[0]
    assert cuda_version.startswith(ARGS["TORCH_CUDA"] + "."), (base, ARGS["TORCH_CUDA"])
    assert BY_NAME["base"].base == base


WORKER_LOCK = lockreqs.parse_lock((ROOT / "docker/requirements/worker.txt").read_text("utf-8"))
API_LOCK = lockreqs.parse_lock((ROOT / "docker/requirements/api.txt").read_text("utf-8"))


def test_torch_pins_equal_the_tested_nodes_extra():
    # The lock installs torch; TORCH_VERSION is what verify_image.py checks it against.
    assert WORKER_LOCK["torch"].version.split("+")[0] == NODE_PINS["torch"]
    assert WORKER_LOCK["torchvision"].version.split("+")[0] == NODE_PINS["torchvision"]
    assert ARGS["TORCH_VERSION"] == NODE_PINS["torch"]
    assert "TORCHVISION_VERSION" not in ARGS, "unused: the lock pins torchvision"
    install = " ".join(BY_NAME["venv"].of("RUN"))
    assert '--torch "${TORCH_VERSION}" --cuda "${TORCH_CUDA}"' in install
    # PyPI by default: no extra index unless a lock for another CUDA line asks for one
    assert ARGS["TORCH_INDEX_URL"] == ""
    assert '${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"}' in install


def test_constraints_are_exact_pins_and_leave_torch_to_the_nodes_extra():
    lines = [
        line.strip()
        for line in (ROOT / "docker" / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    pins = _pins(lines)
    assert len(pins) == len(lines), "every constraint must be name==version"
    assert "torch" not in pins and "torchvision" not in pins
    for name in ("spandrel", "runpod", "httpx", "fpng", "timm", "kornia", "einops", "transformers"):
        assert pins[name] == {**BASE_PINS, **NODE_PINS, "runpod": "1.12.0"}[name], name


def test_comfyui_is_cloned_from_upstream_at_the_pinned_release():
    assert ARGS["COMFYUI_REF"] == "v0.3.64"
    assert re.fullmatch(
        r"https://github\.com/(Comfy-Org|comfyanonymous)/ComfyUI(\.git)?", ARGS["COMFYUI_REPO"]
    )
    clone = " ".join(BY_NAME["comfyui"].of("RUN"))
    assert 'git clone --depth 1 --branch "${COMFYUI_REF}" "${COMFYUI_REPO}" /comfyui' in clone
    assert "rev-parse HEAD" in clone and "${COMFYUI_COMMIT}" in clone
    assert "rm -rf /comfyui/.git" in clone


# --- Python packages: every pip install goes through a hashed lock ------------------------------

LOCKS = {"worker.txt": WORKER_LOCK, "api.txt": API_LOCK}


def _pip_installs(run: str) -> list[list[str]]:
    """The argument lists of each `pip install` in a RUN value (its words after `install`)."""
    text = run.replace("\\\n", " ")
    found = []
    for command in re.split(r"&&|;|\|\||\bthen\b|\bdo\b", text):
        words = command.split()
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                found.append(words[i + 2 :])
    return found


def _copied_locks(stage: Stage) -> dict[str, str]:
    """{path in the stage: lock file name} of the docker/requirements/*.txt files COPY'd in."""
    locks = {}
    for value in stage.of("COPY"):
        words = [w for w in shlex.split(value.replace("\\\n", " ")) if not w.startswith("--")]
        *sources, target = words
        for source in sources:
            if source.startswith("docker/requirements/") and source.endswith(".txt"):
                name = source.rsplit("/", 1)[1]
                locks[target + name if target.endswith("/") else target] = name
    return locks


def test_every_pip_install_goes_through_a_hashed_lock():
    """Each `pip install` in the Dockerfile is one of: a hashed lock (require-hashes, wheels
    only), an offline check that installs nothing (--no-index), or the project itself
    (--no-deps, with the lock's setuptools: no build isolation)."""
    kinds = {}
    for stage in STAGES:
        locks = _copied_locks(stage)
        for run in stage.of("RUN"):
            for args in _pip_installs(run):
                assert not any(a in ("-c", "--constraint") for a in args), f"{stage.name}: {args}"
                if "--require-hashes" in args:
                    assert "--only-binary=:all:" in args, f"{stage.name}: wheels only"
                    lock = args[args.index("-r") + 1]
                    assert lock in locks, f"{stage.name}: {lock} is not a COPY'd lock"
                    kinds.setdefault(stage.name, []).append(locks[lock])
                elif "--no-index" in args:
                    kinds.setdefault(stage.name, []).append("offline check")
                else:
                    assert args == ["--no-deps", "--no-build-isolation", "-e", "/app"], (
                        f"{stage.name}: unpinned pip install {args}"
                    )
                    kinds.setdefault(stage.name, []).append("editable")
    assert kinds == {
        "venv": ["worker.txt", "offline check"],
        "api": ["api.txt", "offline check", "editable"],
        "runtime": ["editable"],
    }
    for run in BY_NAME["fetcher"].of("RUN"):
        assert "pip install" not in run  # the fetcher's venv only lends its pip


def test_the_locks_pin_everything_the_images_need():
    assert lockreqs.check() == []
    # the editable installs build with the lock's setuptools, which pyproject accepts
    for lock in LOCKS.values():
        assert "setuptools" in lock and "pip" in lock
    assert "docker/requirements/comfyui.txt" in " ".join(BY_NAME["venv"].of("COPY"))
    check = " ".join(BY_NAME["venv"].of("RUN"))
    assert "cmp -s /build/comfyui.txt /build/comfyui-requirements.txt" in check
    assert "pip install --no-index -r /build/comfyui-req.txt -r /build/app-req.txt" in check
    assert "pip install --no-index -r /build/api-req.txt" in " ".join(BY_NAME["api"].of("RUN"))


def test_the_locks_target_the_images_python_and_platform():
    # The CUDA base's python3 (Ubuntu 24.04: 3.12) and the api image's python:3.12.x.
    assert ARGS["BASE_IMAGE"].endswith("-ubuntu24.04")
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", ARGS["PYTHON_IMAGE"])
    assert lockreqs.TARGET_PYTHON.startswith("3.12.")
    assert lockreqs.TARGET_PLATFORM.startswith("x86_64-manylinux_2_")
    # wheels for glibc up to Debian bookworm's (2.36) run on bookworm and on Ubuntu 24.04 (2.39)
    assert int(lockreqs.TARGET_PLATFORM.rsplit("_", 1)[1]) <= 36


def test_the_fetcher_needs_no_installed_package():
    # fetch_models.py imports the standard library and handler/models_lock.py only, so the
    # fetcher stage installs nothing (it used to install an unused httpx).
    tree = ast.parse((ROOT / "scripts" / "fetch_models.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"handler"}
    assert BY_NAME["fetcher"].of("RUN") == [
        "python3 -m venv /opt/fetch/venv",
        "touch /opt/fetch/handler/__init__.py",
    ]


# --- licences: spandrel_extra_arches ----------------------------------------------------------


def test_spandrel_extra_arches_is_never_installed_and_is_guarded():
    for stage in STAGES:
        for run in stage.of("RUN"):
            for command in run.split("&&"):
                if "pip install" in command:
                    assert not re.search(r"spandrel[_-]extra[_-]arches", command), command
    for name in ("venv", "runtime"):
        run = " ".join(BY_NAME[name].of("RUN"))
        assert "pip uninstall -y spandrel_extra_arches" in run, name
        assert "verify_image.py --forbid spandrel_extra_arches" in run, name


# --- weights ----------------------------------------------------------------------------------

WEIGHT_STAGES = [s for s in STAGES if s.name.startswith("weights-")]
MODEL_SLUGS = list(lockutil.models(LOCK_RAW))


def test_one_weights_stage_per_models_lock_model():
    assert [s.name for s in WEIGHT_STAGES] == [f"weights-{slug}" for slug in MODEL_SLUGS], (
        "run `python docker/lockutil.py render` after changing models.lock"
    )
    for stage, slug in zip(WEIGHT_STAGES, MODEL_SLUGS, strict=True):
        assert stage.base == "fetcher"
        assert stage.of("COPY") == [f"--from=models-lock /lock/{slug}/ /lock/"]


def test_one_weights_layer_per_model_in_the_runtime_stage():
    copies = [c for c in BY_NAME["runtime"].of("COPY") if "--from=weights-" in c]
    assert copies == [
        f"--link --from=weights-{slug} /models/ /comfyui/models/" for slug in MODEL_SLUGS
    ]


def test_weights_stages_take_the_mirror_build_args_and_the_mirror_context():
    assert ARGS["MODELS_MIRROR"] == "", "no mirror unless the build asks for one"
    assert ARGS["MODELS_MIRROR_FALLBACK"] == "none"
    fetch_models = _load_script("fetch_models")
    assert ARGS["MODELS_MIRROR_FALLBACK"] in fetch_models.FALLBACKS
    mirror = BY_NAME["models-mirror"]
    assert mirror.base == "scratch" and mirror.of("RUN") == []
    assert mirror.of("COPY") == ["docker/models-mirror/README.md /README.md"]
    for stage in WEIGHT_STAGES:
        assert stage.of("ARG") == ["MODELS_MIRROR", "MODELS_MIRROR_FALLBACK"], stage.name
        (run,) = stage.of("RUN")
        assert run.startswith("--mount=type=bind,from=models-mirror,target=/mirror "), stage.name
        assert '--mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}"' in run


def _load_script(name: str) -> ModuleType:
    return load_file(ROOT / "scripts" / f"{name}.py", f"_s_{name}")


def test_weights_come_only_from_fetch_models_and_models_lock():
    for stage in WEIGHT_STAGES:
        (run,) = stage.of("RUN")
        assert "python /opt/fetch/scripts/fetch_models.py --lock /lock/models.lock" in run
    fetcher = BY_NAME["fetcher"].of("COPY")
    assert "scripts/fetch_models.py /opt/fetch/scripts/fetch_models.py" in fetcher
    assert "models.lock /opt/lock/models.lock" in BY_NAME["models-lock"].of("COPY")
    downloaders = re.compile(r"\b(curl|wget|hf_hub_download|huggingface-cli|hf download|git lfs)\b")
    for stage in STAGES:
        for run in stage.of("RUN"):
            assert not downloaders.search(run), f"{stage.name}: {run}"
        for add in stage.of("ADD"):
            assert "://" not in add, f"{stage.name}: ADD {add}"
    verify = " ".join(BY_NAME["runtime"].of("RUN"))
    assert "fetch_models.py --verify-only --lock /app/models.lock" in verify
    assert "Settings.from_env()" in verify  # a BAKE_TASKS typo fails the build


def test_runtime_checks_the_imports_of_the_baked_birefnet_code():
    run = " ".join(" ".join(BY_NAME["runtime"].of("RUN")).replace("\\", " ").split())
    assert (
        "(cd /comfyui/custom_nodes && python -m simplypng.models.snapshot_deps "
        "--lock /app/models.lock --models-dir /comfyui/models)"
    ) in run
    # after the weights are verified and before anything runs as the worker
    assert run.index("fetch_models.py --verify-only") < run.index("snapshot_deps")


def test_weights_blocks_are_rendered_from_the_current_models_lock():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert lockutil.render_dockerfile(text, LOCK_RAW) == text, (
        "Dockerfile is stale: run `python docker/lockutil.py render`"
    )


def test_bake_tasks_default_to_every_type_and_set_the_enabled_types():
    assert ARGS["BAKE_TASKS"].split(",") == list(ALL_TYPES)
    env = " ".join(BY_NAME["runtime"].of("ENV"))
    assert "ENABLED_TYPES=${BAKE_TASKS}" in env
    assert "ARG BAKE_TASKS" in "".join(i["content"] for i in BY_NAME["models-lock"].instructions)


def test_runtime_is_offline_and_knows_its_paths():
    env = " ".join(BY_NAME["runtime"].of("ENV")).split()
    for setting in (
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        "COMFYUI_DIR=/comfyui",
        "WORKFLOWS_DIR=/app/workflows",
        "MODELS_LOCK=/app/models.lock",
        "REQUIRE_GPU=true",
    ):
        assert setting in env, setting


def _env(stage: Stage) -> dict[str, str]:
    pairs = [word.split("=", 1) for value in stage.of("ENV") for word in shlex.split(value)]
    return {key: val.replace("${BAKE_TASKS}", ARGS["BAKE_TASKS"]) for key, val in pairs}


def test_runtime_env_is_valid_worker_configuration():
    env = _env(BY_NAME["runtime"])
    settings = WorkerSettings.from_env(env)
    assert settings.enabled_types == list(ALL_TYPES)
    assert settings.comfyui_python == "/opt/venv/bin/python" and settings.require_gpu


def test_api_image_runs_unprivileged_with_valid_standalone_settings():
    api = BY_NAME["api"]
    settings = ApiSettings.from_env(_env(api))
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.database_url.startswith("sqlite:////data/")
    assert api.of("USER") == ["simplypng"] and api.of("EXPOSE") == ["8080"]
    assert [json.loads(v) for v in api.of("CMD")] == [["python", "-m", "api_stub", "serve"]]


def test_api_image_starts_through_the_entrypoint_that_migrates_and_settles_the_key():
    # tests/unit/test_api_entrypoint.py runs the script itself on an empty data folder.
    api = BY_NAME["api"]
    script = "/app/docker/api-entrypoint.sh"
    assert [json.loads(v) for v in api.of("ENTRYPOINT")] == [[script]]
    assert f"--chmod=0755 docker/api-entrypoint.sh {script}" in api.of("COPY")
    assert os.access(ROOT / "docker" / "api-entrypoint.sh", os.X_OK)
    # the entry point runs as the image's user, on the volume the image prepares for it
    assert "chown simplypng:simplypng /data" in " ".join(api.of("RUN"))
    assert _env(api)["DATABASE_URL"] == "sqlite:////data/simplypng.db"


# --- self-test and entry point ----------------------------------------------------------------


def test_final_image_depends_on_the_selftest():
    final = STAGES[-1]
    assert final.name == "worker" and final.base == "runtime"
    assert "--from=selftest /tmp/selftest.txt /app/SELFTEST.txt" in final.of("COPY")
    selftest = BY_NAME["selftest"]
    assert selftest.base == "runtime"
    (run,) = selftest.of("RUN")
    assert run.startswith("--network=none ")
    assert "python /app/scripts/selftest.py" in run
    # Builds have no GPU; ComfyUI dies probing CUDA unless told to use the CPU.
    assert "COMFYUI_EXTRA_ARGS=--cpu python /app/scripts/selftest.py" in run
    assert (ROOT / "scripts" / "selftest.py").is_file(), "the self-test the build runs is missing"
    assert '"${SKIP_SELFTEST}" = "1"' in run
    assert ARGS["SKIP_SELFTEST"] == "0"


def test_worker_starts_through_start_sh_under_tini():
    final = STAGES[-1]
    assert [json.loads(v) for v in final.of("CMD")] == [["/app/scripts/start.sh"]]
    assert [json.loads(v) for v in final.of("ENTRYPOINT")] == [["/usr/bin/tini", "--"]]
    start = ROOT / "scripts" / "start.sh"
    assert os.access(start, os.X_OK)
    lines = [ln.strip() for ln in start.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert lines[-1] == 'exec python -m handler.startup "$@"'
    assert (ROOT / "handler" / "startup.py").is_file()


def test_apt_installs_are_minimal_and_the_runtime_has_no_build_tools():
    for stage in STAGES:
        for run in stage.of("RUN"):
            if "apt-get install" in run:
                assert "--no-install-recommends" in run, stage.name
                assert "rm -rf /var/lib/apt/lists/*" in run, stage.name
    chain = ["runtime", "worker"]
    for name in chain:
        for run in BY_NAME[name].of("RUN"):
            assert "apt-get install" not in run, f"{name} installs system packages"
    for name in ("base", "runtime", "worker"):
        text = " ".join(BY_NAME[name].of("RUN"))
        assert not re.search(r"\b(build-essential|gcc|g\+\+|python3-dev|git)\b", text), name


# --- build context ----------------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def _context_sources() -> list[str]:
    sources = []
    for stage in STAGES:
        for value in stage.of("COPY"):
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            if "--from=" not in value:
                sources += words[:-1]
    return sources


def test_dockerignore_drops_local_state_but_keeps_what_the_build_copies():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for local in (".venv", ".git", ".pytest_cache", ".env", "handler/__pycache__", "app.db"):
        assert _ignored(local, patterns), local
    sources = _context_sources()
    assert "models.lock" in sources and "comfy_nodes/simplypng" in sources
    for source in sources:
        assert not _ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"


# --- docker/lockutil.py -----------------------------------------------------------------------


def _entry(model: str, file: str, tasks: list[str], role: str = "weights") -> dict:
    return {
        "name": f"{model}/{file}",
        "model": model,
        "role": role,
        "tasks": tasks,
        "version": f"org/{model}@v1",
        "url": f"https://github.com/org/{model}/releases/download/v1/{file}",
        "sha256": "0" * 64,
        "size": 10,
        "licence": "MIT",
        "dest": f"{model}/{file}",
    }


TOY_LOCK = {
    "lock_version": 1,
    "models": [
        _entry("Matte_Net", "net.py", ["bg_remove"], role="code"),
        _entry("Matte_Net", "net.safetensors", ["bg_remove"]),
        _entry("upscaler", "up.pth", ["upscale_2k"]),
    ],
}


def test_split_writes_one_valid_lock_per_needed_model(tmp_path):
    baked = lockutil.split(TOY_LOCK, tmp_path, {"bg_remove"})
    assert baked == {"matte-net": True, "upscaler": False}
    sub = json.loads((tmp_path / "matte-net" / "models.lock").read_text(encoding="utf-8"))
    assert [e.name for e in parse_lock(sub)] == ["Matte_Net/net.py", "Matte_Net/net.safetensors"]
    assert sub["lock_version"] == 1
    assert (tmp_path / "upscaler").is_dir()
    assert list((tmp_path / "upscaler").iterdir()) == []


def test_split_bakes_every_model_a_listed_task_needs(tmp_path):
    tasks = lockutil.parse_tasks(" upscale_2k, bg_remove ")
    assert tasks == {"upscale_2k", "bg_remove"}
    assert lockutil.split(TOY_LOCK, tmp_path, tasks) == {"matte-net": True, "upscaler": True}
    with pytest.raises(LockError, match="no tasks"):
        lockutil.parse_tasks(" , ")


def test_split_rejects_a_bad_lock_and_clashing_stage_names(tmp_path):
    with pytest.raises(LockError):
        lockutil.split({"lock_version": 1, "models": [{"name": "x"}]}, tmp_path, {"bg_remove"})
    clash = {
        "lock_version": 1,
        "models": [
            _entry("Big Lama", "a.pt", ["object_remove"]),
            _entry("big-lama", "b.pt", ["object_remove"]),
        ],
    }
    with pytest.raises(LockError, match="share stage big-lama"):
        lockutil.split(clash, tmp_path, {"object_remove"})


def test_render_rebuilds_both_blocks_and_check_reports_staleness(tmp_path, capsys):
    text = DOCKERFILE.read_text(encoding="utf-8")
    rendered = lockutil.render_dockerfile(text, TOY_LOCK)
    assert "FROM fetcher AS weights-matte-net" in rendered
    assert "COPY --link --from=weights-upscaler /models/ /comfyui/models/" in rendered
    assert "weights-big-lama" not in rendered
    dockerfile, lock = tmp_path / "Dockerfile", tmp_path / "models.lock"
    dockerfile.write_text(text, encoding="utf-8")
    lock.write_text(json.dumps(TOY_LOCK), encoding="utf-8")
    args = ["render", "--lock", str(lock), "--dockerfile", str(dockerfile)]
    assert lockutil.main([*args, "--check"]) == 1
    assert "run `python docker/lockutil.py render`" in capsys.readouterr().err
    assert lockutil.main(args) == 0
    assert dockerfile.read_text(encoding="utf-8") == rendered
    assert lockutil.main([*args, "--check"]) == 0


def test_render_needs_the_markers():
    with pytest.raises(LockError, match="markers"):
        lockutil.render_dockerfile("FROM scratch AS x\n", TOY_LOCK)


# --- docker/pyproject_reqs.py and docker/verify_image.py ----------------------------------------


def test_pyproject_reqs_lists_base_then_extras(capsys):
    reqs = pyproject_reqs.requirements(PYPROJECT, ["worker", "nodes"])
    base = PYPROJECT["project"]["dependencies"]
    assert reqs[: len(base)] == base
    assert f"torch=={NODE_PINS['torch']}" in reqs and "runpod==1.12.0" in reqs
    assert pyproject_reqs.main([str(ROOT / "pyproject.toml"), "no-such-extra"]) == 2
    assert "unknown extras" in capsys.readouterr().err


def test_verify_image_finds_forbidden_modules():
    assert verify_image.importable_forbidden(["json", "spandrel_extra_arches"]) == ["json"]
    assert verify_image.main(["--forbid", "json"]) == 1
    assert verify_image.main(["--forbid", "spandrel_extra_arches"]) == 0


@pytest.mark.torch
def test_verify_image_checks_the_torch_release_and_cuda_line():
    torch = pytest.importorskip("torch", reason="needs torch")
    release = torch.__version__.split("+")[0]
    if torch.version.cuda is None:
        assert verify_image.torch_problems(release, "13.0") == [
            f"torch {torch.__version__} is a CPU-only build, expected CUDA 13.0"
        ]
        return
    line = ".".join(torch.version.cuda.split(".")[:2])
    assert verify_image.torch_problems(release, line) == []
    assert len(verify_image.torch_problems("0.0.1", line)) == 1
    problems = verify_image.torch_problems(release, "9.9")
    assert problems == [
        f"torch is built for CUDA {torch.version.cuda}, the base image has CUDA 9.9"
    ]


def test_docker_scripts_are_not_importable_as_a_package():
    # docker/ must stay a plain folder: a package named `docker` would shadow docker-py.
    assert not (ROOT / "docker" / "__init__.py").exists()
    assert "docker" not in sys.modules or "site-packages" in str(sys.modules["docker"].__file__)
