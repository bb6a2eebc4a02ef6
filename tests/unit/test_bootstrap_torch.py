"""scripts/bootstrap.sh picks the torch build for the machine: CPU-only where there is no
NVIDIA GPU and a CPU build is in reach, else the default (on Linux x86_64 the CUDA build).

Runs bootstrap's own torch step (`source scripts/bootstrap.sh`) against a throwaway venv, with
a fake `nvidia-smi` on PATH and a local package index holding fake `torch-<pin>+cpu` and
`torchvision-<pin>+cpu` wheels: no network, nothing downloaded, the project's .venv untouched.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from tests.fakes.comfy_double import free_port

REPO = Path(__file__).resolve().parents[2]
HANG_S = 600  # only catches a hang: pip works from local files here

NO_GPU = '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n'
ONE_GPU = "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0b1c)'\n"


def _pins() -> dict[str, str]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        nodes = tomllib.load(handle)["project"]["optional-dependencies"]["nodes"]
    pairs = (r.split("==") for r in nodes if r.split("==")[0] in ("torch", "torchvision"))
    return {name: version for name, version in pairs}


PINS = _pins()
CPU = {name: f"{version}+cpu" for name, version in PINS.items()}


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal pure-Python wheel that installs as `name` at `version`."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": "\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
            + [f"Requires-Dist: {r}" for r in requires]
        )
        + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 simple index of `wheels` under root/simple."""
    (root / "files").mkdir(parents=True)
    for wheel in wheels:
        project = wheel.name.split("-")[0]
        shutil.copy(wheel, root / "files" / wheel.name)
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f'<a href="../../files/{wheel.name}">{wheel.name}</a>\n')
    (root / "simple").mkdir(exist_ok=True)
    return root / "simple"


@pytest.fixture(scope="module")
def cpu_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("wheels")
    wheels = [
        _wheel(built, "torch", CPU["torch"], []),
        _wheel(built, "torchvision", CPU["torchvision"], [f"torch=={PINS['torch']}"]),
    ]
    return _index(tmp_path_factory.mktemp("cpu-index"), wheels)


@pytest.fixture(scope="module")
def http_index(cpu_index: Path) -> Iterator[str]:
    """The CPU index over HTTP, as PyTorch's would be (bootstrap probes http(s) indexes)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(cpu_index.parent))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    return tmp_path / "venv" / "bin" / "python"


def _torch_step(
    python: Path, tmp_path: Path, *, nvidia_smi: str | None, torch_index: str
) -> subprocess.CompletedProcess[str]:
    """Run bootstrap's torch step; pip sees only local indexes (its default: an empty one)."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        (fakebin / "nvidia-smi").write_text(nvidia_smi)
        (fakebin / "nvidia-smi").chmod(0o755)
    (tmp_path / "empty-index").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "SIMPLYPNG_"))}
    env |= {
        "PATH": f"{fakebin}:/usr/bin:/bin",
        "PIP_CONFIG_FILE": os.devnull,  # not this machine's pip.conf, caps or wheel folders
        "PIP_INDEX_URL": (tmp_path / "empty-index").as_uri(),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
        "SIMPLYPNG_TORCH_INDEX": torch_index,
    }
    return subprocess.run(
        [
            "bash",
            "-c",
            'source scripts/bootstrap.sh && install_torch_for_this_machine "$0"',
            python,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


def _installed(python: Path, name: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.mark.parametrize("nvidia_smi", [None, NO_GPU], ids=["no-nvidia-smi", "nvidia-smi-fails"])
def test_without_a_gpu_the_cpu_only_torch_is_installed(
    venv: Path, tmp_path: Path, http_index: str, nvidia_smi: str | None
) -> None:
    done = _torch_step(venv, tmp_path, nvidia_smi=nvidia_smi, torch_index=http_index)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"==> no NVIDIA GPU: installed CPU-only torch=={CPU['torch']} "
        f"torchvision=={CPU['torchvision']}"
    )
    assert _installed(venv, "torch") == CPU["torch"]
    assert _installed(venv, "torchvision") == CPU["torchvision"]
    # pyproject's plain pins accept the CPU build: the main install keeps it.
    keep = subprocess.run(
        [venv, "-m", "pip", "install", f"torch=={PINS['torch']}"],
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"},
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    assert keep.returncode == 0 and "Requirement already satisfied" in keep.stdout, keep.stderr
    # A second bootstrap keeps what is there, silently (idempotent).
    again = _torch_step(venv, tmp_path, nvidia_smi=nvidia_smi, torch_index=http_index)
    assert again.returncode == 0 and again.stdout == ""
    assert _installed(venv, "torch") == CPU["torch"]


def test_with_a_gpu_torch_comes_from_the_default_index(
    venv: Path, tmp_path: Path, http_index: str
) -> None:
    done = _torch_step(venv, tmp_path, nvidia_smi=ONE_GPU, torch_index=http_index)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == "==> NVIDIA GPU found: torch from the default index (the CUDA build)"
    )
    assert _installed(venv, "torch") is None  # left to the main install, as before


def test_an_unreachable_torch_index_falls_back_in_one_line(venv: Path, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/whl/cpu"
    done = _torch_step(venv, tmp_path, nvidia_smi=None, torch_index=closed)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"bootstrap: no NVIDIA GPU, but no CPU-only torch=={CPU['torch']}")
    assert f"{closed} unreachable" in lines[0]
    assert lines[0].endswith("installing the default torch (on Linux x86_64 the CUDA build, ~6 GB)")
    assert _installed(venv, "torch") is None  # nothing half-installed: the default follows


def test_an_index_without_a_cpu_build_falls_back(
    venv: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = _index(tmp_path_factory.mktemp("no-cpu-index"), [])
    done = _torch_step(venv, tmp_path, nvidia_smi=NO_GPU, torch_index=empty.as_uri())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bootstrap: no NVIDIA GPU, but no CPU-only"), done.stdout
    assert f"not in {empty.as_uri()} nor in pip's configured indexes" in done.stdout
    assert f"torch=={CPU['torch']}" in done.stdout  # pip's reason names the missing build
    assert _installed(venv, "torch") is None
