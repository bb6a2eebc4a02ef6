"""The images' Python locks (docker/requirements/*.txt, written by docker/lockreqs.py): every
package the worker and api images install is == pinned with hashes, and the locks cover
ComfyUI's requirements and every requirement of the extras each image installs.

Read statically, no network: `python docker/lockreqs.py compile` needs uv and PyPI, this does not.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.fakes.scripts import load_file

ROOT = Path(__file__).resolve().parents[2]
REQ_DIR = ROOT / "docker" / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


lockreqs = load_file(ROOT / "docker" / "lockreqs.py", "_docker_lockreqs")
WORKER = lockreqs.parse_lock((REQ_DIR / "worker.txt").read_text(encoding="utf-8"))
API = lockreqs.parse_lock((REQ_DIR / "api.txt").read_text(encoding="utf-8"))
TARGET = {"python_version": "3.12", "sys_platform": "linux", "platform_machine": "x86_64"}


def _covered(requirement: str, lock: dict) -> str | None:
    """None when `lock` pins a version `requirement` accepts, else why not."""
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate(TARGET):
        return None
    pin = lock.get(lockreqs.normalize(req.name))
    if pin is None:
        return f"{requirement}: not pinned"
    if not req.specifier.contains(Version(pin.version), prereleases=True):
        return f"{requirement}: pinned at {pin.version}"
    return None


def _extras(*names: str) -> list[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for name in names:
        reqs += project["optional-dependencies"][name]
    return reqs


# --- the committed locks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["worker.txt", "api.txt"])
def test_every_line_of_a_lock_is_an_exact_pin_with_hashes(name):
    text = (REQ_DIR / name).read_text(encoding="utf-8")
    requirements = [line for line in text.splitlines() if line[:1].isalnum()]
    assert requirements, name
    for line in requirements:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*==[A-Za-z0-9.+!-]+ \\", line), line
    for line in text.splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("-e", "-r", "-c", "--index", "--extra-index", "-f")), line
        assert "@ " not in stripped and "://" not in stripped.split("#", 1)[0], line
    pins = lockreqs.parse_lock(text)
    assert len(pins) == len(requirements)
    assert all(pin.hashes for pin in pins.values())


def test_the_worker_lock_covers_comfyui_and_the_worker_extras():
    comfyui = (REQ_DIR / "comfyui.txt").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in comfyui.splitlines()]
    lines = [line for line in lines if line]
    assert "comfyui-frontend-package==1.27.10" in lines  # ComfyUI v0.3.64's requirements.txt
    problems = []
    for line in lines:
        name = lockreqs.normalize(Requirement(line).name)
        if name == "torchaudio":
            assert name not in WORKER, "torchaudio has no build for our torch"
            continue
        problems.append(_covered(line, WORKER))
    problems += [_covered(req, WORKER) for req in _extras("worker", "nodes")]
    assert [p for p in problems if p] == []
    # what ComfyUI left unpinned and the issue named, pinned now
    for name in ("torchsde", "sentencepiece", "alembic", "sqlalchemy", "av", "pydantic-settings"):
        assert re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", WORKER[name].version), name


def test_the_api_lock_covers_the_api_extra():
    assert [p for p in (_covered(req, API) for req in _extras("api")) if p] == []
    # psycopg[binary,pool]: the extras' packages too
    assert {"psycopg", "psycopg-binary", "psycopg-pool"} <= set(API)


def test_both_locks_pin_the_build_backend_and_pip():
    backend = PYPROJECT["build-system"]["requires"]
    for lock in (WORKER, API):
        assert [p for p in (_covered(req, lock) for req in backend) if p] == []
        assert "pip" in lock and "setuptools" in lock


def test_the_locks_agree_with_the_ci_constraints_and_with_each_other():
    for line in lockreqs.constraint_lines():
        name, _, version = line.partition("==")
        for lock in (WORKER, API):
            pin = lock.get(lockreqs.normalize(name))
            assert pin is None or pin.version == version, (line, pin)
    for name in set(WORKER) & set(API):
        assert WORKER[name].version == API[name].version, name


def test_never_the_non_commercial_package():
    assert "spandrel-extra-arches" not in WORKER and "spandrel-extra-arches" not in API


def test_check_passes_on_the_committed_files(capsys):
    assert lockreqs.main(["check"]) == 0
    assert "pin every package" in capsys.readouterr().out


# --- lockreqs.check catches what would let an unpinned package in ---------------------------------


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Copies of the lock inputs and outputs that a test may break; lockreqs reads these."""
    req_dir = tmp_path / "requirements"
    shutil.copytree(REQ_DIR, req_dir)
    pyproject = tmp_path / "pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", pyproject)
    constraints = tmp_path / "constraints.txt"
    shutil.copy(ROOT / "docker" / "constraints.txt", constraints)
    monkeypatch.setattr(lockreqs, "REQ_DIR", req_dir)
    monkeypatch.setattr(lockreqs, "PYPROJECT", pyproject)
    monkeypatch.setattr(lockreqs, "CONSTRAINTS", constraints)
    monkeypatch.setattr(lockreqs, "COMFYUI_REQUIREMENTS", req_dir / "comfyui.txt")
    assert lockreqs.check() == []
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_check_finds_a_new_comfyui_requirement_the_lock_lacks(sandbox):
    comfyui = sandbox / "requirements" / "comfyui.txt"
    comfyui.write_text(comfyui.read_text(encoding="utf-8") + "brand-new-package>=1\n", "utf-8")
    problems = lockreqs.check()
    assert "worker.in is stale: run `python docker/lockreqs.py compile`" in problems
    assert "worker.txt: brand-new-package>=1: not in the lock" in problems


def test_check_finds_an_extra_requirement_the_lock_does_not_satisfy(sandbox):
    _edit(sandbox / "pyproject.toml", '"uvicorn>=0.34"', '"uvicorn>=99"')
    problems = lockreqs.check()
    assert any(p.startswith("api.txt: uvicorn>=99: the lock pins") for p in problems), problems


def test_check_finds_an_unpinned_or_unhashed_lock_line(sandbox):
    lock = sandbox / "requirements" / "api.txt"
    _edit(lock, "uvicorn==", "uvicorn>=")
    assert any("not an exact pin" in p for p in lockreqs.check())
    shutil.copy(REQ_DIR / "api.txt", lock)
    text = lock.read_text(encoding="utf-8")
    lock.write_text(text + "sneaky==1.0\n", encoding="utf-8")
    assert any("sneaky==1.0: every pin needs --hash" in p for p in lockreqs.check())
    lock.write_text("--index-url https://example.invalid/simple\n" + text, encoding="utf-8")
    assert any("not an exact pin: '--index-url'" in p for p in lockreqs.check())


def test_check_finds_a_lock_compiled_for_another_target(sandbox):
    _edit(
        sandbox / "requirements" / "worker.txt",
        "# target: python 3.12.3",
        "# target: python 3.11.0",
    )
    assert any("was not compiled for python" in p for p in lockreqs.check())


def test_check_finds_a_lock_that_disagrees_with_the_ci_constraints(sandbox):
    _edit(sandbox / "constraints.txt", "uvicorn==0.54.0", "uvicorn==0.53.0")
    assert "api.txt: uvicorn==0.54.0, constraints.txt uvicorn==0.53.0" in lockreqs.check()


def test_parse_lock_rejects_anything_but_hashed_pins():
    good = "a==1 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via b\n"
    assert lockreqs.parse_lock(good)["a"].version == "1"
    for bad in (
        "a>=1 --hash=sha256:" + "0" * 64,
        "a==1",
        "a==1 --hash=md5:abc",
        "a @ https://example.invalid/a.whl --hash=sha256:" + "0" * 64,
        "-e .",
        good + good,
    ):
        with pytest.raises(lockreqs.LockProblem):
            lockreqs.parse_lock(bad)


# --- the demo installs ComfyUI's requirements at the image's versions ------------------------------


class _RecordingChildren:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def run(self, name: str, argv: list[str], **kwargs: object) -> str:
        self.commands.append(argv)
        return ""


def test_the_demo_installs_comfyui_requirements_under_the_worker_lock(tmp_path):
    from scripts.demokit import comfy

    checkout = tmp_path / "ComfyUI"
    checkout.mkdir()
    shutil.copy(REQ_DIR / "comfyui.txt", checkout / "requirements.txt")
    children = _RecordingChildren()
    comfy._install_requirements(children, checkout, {})
    install = next(argv for argv in children.commands if "install" in argv)
    constraints = [Path(install[i + 1]) for i, arg in enumerate(install) if arg == "-c"]
    assert str(ROOT / "docker" / "constraints.txt") not in map(str, constraints)
    pins = {}
    for path in constraints:
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, version = line.partition("==")
            pins.setdefault(lockreqs.normalize(name), set()).add(version)
    # every package of the image's lock, at its version; torch stays whatever is installed
    for name, pin in WORKER.items():
        if name in ("torch", "torchvision"):
            continue
        assert pins.get(name) == {pin.version}, name
    requirements = (checkout / ".simplypng-demo" / "requirements.txt").read_text("utf-8")
    assert "torchaudio" not in requirements and "torchsde" in requirements
