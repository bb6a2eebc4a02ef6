"""The images' Python locks: every package of the worker and api images, == pinned with hashes.

    python docker/lockreqs.py compile                       # refresh after editing the inputs
    python docker/lockreqs.py compile --upgrade-package av  # move one package to its newest
    python docker/lockreqs.py compile --upgrade             # move everything to its newest
    python docker/lockreqs.py compile --comfyui-dir ~/ComfyUI   # after a ComfyUI upgrade
    python docker/lockreqs.py check                         # offline: the locks are complete

`compile` writes, for each image, docker/requirements/<image>.in (what the image needs) and
docker/requirements/<image>.txt (the lock: that and every transitive dependency, == pinned,
with the sha256 of every file of that release), resolving with uv for the images' interpreter
and platform (TARGET_PYTHON on TARGET_PLATFORM) whatever machine runs it:

- worker: pyproject.toml's dependencies and extras `worker` and `nodes` (torch and
  torchvision are pinned there), ComfyUI's requirements.txt (docker/requirements/comfyui.txt,
  a verbatim copy of the release the Dockerfile clones; torch, torchvision and torchaudio are
  left out: the first two come from `nodes`, torchaudio has no build for our torch), setuptools
  (the build backend of `pip install -e /app`) and pip.
- api: pyproject.toml's dependencies and extra `api`, setuptools and pip.

Both resolve under docker/constraints.txt (the versions CI tests), and an existing lock's pins
are kept unless --upgrade / --upgrade-package ask otherwise. The Dockerfile installs a lock
with `pip install --require-hashes --only-binary=:all: -r`, so nothing unpinned, unhashed or
built from source enters an image. `--comfyui-dir` copies requirements.txt from a ComfyUI
checkout, after checking that it is at the Dockerfile's COMFYUI_COMMIT. `--torch-index-url` adds
a package index for another CUDA line's torch (pass the same URL as the build arg
TORCH_INDEX_URL).

`check` needs no network: each lock pins every requirement with == and hashes, satisfies every
input requirement and every docker/constraints.txt pin, and its .in file is current. It exits
1 and says what is wrong otherwise.

Needs uv (https://pypi.org/project/uv/; `pip install uv`) on PATH or importable for `compile`,
and `packaging` for `check`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pyproject_reqs.py beside this file

from pyproject_reqs import requirements as pyproject_requirements  # noqa: E402

REQ_DIR = REPO_ROOT / "docker" / "requirements"
CONSTRAINTS = REPO_ROOT / "docker" / "constraints.txt"
COMFYUI_REQUIREMENTS = REQ_DIR / "comfyui.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
# The images' interpreter: the CUDA base's Ubuntu 24.04 python3 is 3.12.3, the api image's
# python:3.12.x is newer; markers are evaluated for the older. glibc: Ubuntu 24.04 has 2.39 and
# Debian bookworm 2.36, so wheels for manylinux_2_36 and older run on both.
TARGET_PYTHON = "3.12.3"
TARGET_PLATFORM = "x86_64-manylinux_2_36"
TARGET_LINE = f"# target: python {TARGET_PYTHON} on {TARGET_PLATFORM}"
# ComfyUI lists these unpinned; torch and torchvision come pinned from the `nodes` extra, and
# torchaudio has no release for our torch (ComfyUI skips its audio nodes without it).
COMFYUI_LEFT_OUT = ("torch", "torchvision", "torchaudio")
# Never installed: its licence is non-commercial (the Dockerfile also uninstalls and forbids it).
FORBIDDEN = ("spandrel-extra-arches",)
# Always in a lock: the editable install's build backend (pip runs it without build isolation)
# and pip itself, so that no tool in the image comes from wherever the base image got it.
TOOLS = ("pip",)


@dataclass(frozen=True)
class Image:
    name: str
    extras: tuple[str, ...]
    comfyui: bool

    @property
    def inputs(self) -> Path:
        return REQ_DIR / f"{self.name}.in"

    @property
    def lock(self) -> Path:
        return REQ_DIR / f"{self.name}.txt"


IMAGES = (Image("worker", ("worker", "nodes"), comfyui=True), Image("api", ("api",), False))


class LockProblem(Exception):
    """The lock or its inputs are not what the images need."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The project name a requirements.txt line names, or None for blanks and comments."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)
    if match is None:
        raise LockProblem(f"cannot read the requirement {line!r}")
    return normalize(match[0])


def comfyui_requirements(text: str) -> list[str]:
    """ComfyUI's requirement lines that the worker installs (without torch*)."""
    keep = []
    for line in text.splitlines():
        name = requirement_name(line)
        if name is not None and name not in COMFYUI_LEFT_OUT:
            keep.append(line.split("#", 1)[0].strip())
    return keep


def build_requirements(pyproject: dict) -> list[str]:
    """pyproject's build-system requirements (setuptools): `pip install -e` runs them."""
    return list(pyproject["build-system"]["requires"])


def render_inputs(image: Image, pyproject: dict, comfyui_text: str) -> str:
    """The .in file of `image`: every requirement the image installs directly."""
    parts = [
        f"# What the {image.name} image installs; generated by `python docker/lockreqs.py "
        "compile`, which resolves it into",
        f"# {image.lock.name} (do not edit: edit pyproject.toml or comfyui.txt and compile).",
        f"# pyproject.toml: dependencies and extras {', '.join(image.extras)}",
        *pyproject_requirements(pyproject, image.extras),
    ]
    if image.comfyui:
        parts += [
            f"# comfyui.txt (ComfyUI's requirements.txt) without {', '.join(COMFYUI_LEFT_OUT)}",
            *comfyui_requirements(comfyui_text),
        ]
    parts += [
        "# build backend of `pip install --no-build-isolation -e /app`, and pip",
        *build_requirements(pyproject),
        *TOOLS,
    ]
    return "\n".join(parts) + "\n"


# --- reading a lock ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str  # normalized
    version: str
    hashes: tuple[str, ...]


_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def parse_lock(text: str) -> dict[str, Pin]:
    """{name: Pin} of a hashed requirements lock; LockProblem for anything but `name==version
    --hash=sha256:...` lines (no options, ranges, URLs, editables, markers or extras)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()  # hashes hold no "#": only comments go
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    if pending.strip():
        logical.append(pending.strip())
    pins: dict[str, Pin] = {}
    for entry in logical:
        words = entry.split()
        match = _PIN.fullmatch(words[0])
        if match is None:
            raise LockProblem(f"not an exact pin: {words[0]!r}")
        hashes = words[1:]
        if not hashes or not all(_HASH.fullmatch(h) for h in hashes):
            raise LockProblem(f"{words[0]}: every pin needs --hash=sha256:... and nothing else")
        name = normalize(match[1])
        if name in pins:
            raise LockProblem(f"{name} is pinned twice")
        pins[name] = Pin(name, match[2], tuple(h.split(":", 1)[1] for h in hashes))
    return pins


def target_environment() -> dict[str, str]:
    """PEP 508 marker values of the images' interpreter and platform."""
    return {
        "python_version": ".".join(TARGET_PYTHON.split(".")[:2]),
        "python_full_version": TARGET_PYTHON,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }


def coverage_problems(lines: Sequence[str], pins: dict[str, Pin]) -> list[str]:
    """What `pins` lacks for the requirement `lines` (each must be pinned, in range)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    env = target_environment()
    problems = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = normalize(req.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{line}: not in the lock")
            continue
        if not req.specifier.contains(Version(pin.version), prereleases=True):
            problems.append(f"{line}: the lock pins {pin.version}")
        for extra in req.extras:
            # psycopg[binary,pool] needs psycopg-binary and psycopg-pool (the extras' own
            # packages by name; their exact closure is checked by pip --require-hashes).
            if normalize(f"{name}-{extra}") not in pins:
                problems.append(f"{line}: {name}-{extra} (extra {extra}) is not in the lock")
    return problems


def constraint_lines() -> list[str]:
    return [
        line.strip()
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def check_image(image: Image, pyproject: dict, comfyui_text: str) -> list[str]:
    """Everything wrong with `image`'s .in and lock files; [] when they are complete."""
    problems = []
    wanted = render_inputs(image, pyproject, comfyui_text)
    if not image.inputs.is_file() or image.inputs.read_text(encoding="utf-8") != wanted:
        problems.append(f"{image.inputs.name} is stale: run `python docker/lockreqs.py compile`")
    if not image.lock.is_file():
        return [*problems, f"{image.lock.name} is missing: run `python docker/lockreqs.py compile`"]
    text = image.lock.read_text(encoding="utf-8")
    try:
        pins = parse_lock(text)
    except LockProblem as exc:
        return [*problems, f"{image.lock.name}: {exc}"]
    if TARGET_LINE not in text.splitlines():
        problems.append(f"{image.lock.name} was not compiled for {TARGET_LINE[10:]}")
    inputs = [line for line in wanted.splitlines() if line and not line.startswith("#")]
    problems += [f"{image.lock.name}: {p}" for p in coverage_problems(inputs, pins)]
    for line in constraint_lines():
        name, _, version = line.partition("==")
        pin = pins.get(normalize(name))
        if pin is not None and pin.version != version:
            problems.append(f"{image.lock.name}: {pin.name}=={pin.version}, constraints.txt {line}")
    for name in FORBIDDEN:
        if name in pins:
            problems.append(f"{image.lock.name}: {name} must never be installed")
    return problems


def check(comfyui_text: str | None = None) -> list[str]:
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    if comfyui_text is None:
        comfyui_text = COMFYUI_REQUIREMENTS.read_text(encoding="utf-8")
    problems = []
    for image in IMAGES:
        problems += check_image(image, pyproject, comfyui_text)
    return problems


# --- compiling ---------------------------------------------------------------------------------


def dockerfile_arg(name: str) -> str:
    match = re.search(
        rf"^ARG {name}=(\S*)$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    if match is None:
        raise LockProblem(f"the Dockerfile has no ARG {name}=...")
    return match[1]


def copy_comfyui_requirements(checkout: Path) -> None:
    """Copy requirements.txt from a ComfyUI checkout at the Dockerfile's COMFYUI_COMMIT."""
    commit = dockerfile_arg("COMFYUI_COMMIT")
    head = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not commit or not head.startswith(commit):
        raise LockProblem(f"{checkout} is at {head or '?'}, the Dockerfile wants {commit}")
    shutil.copyfile(checkout / "requirements.txt", COMFYUI_REQUIREMENTS)
    print(f"copied {checkout / 'requirements.txt'} (ComfyUI {head[:12]})")


def uv_command() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        import uv
    except ImportError:
        raise LockProblem("uv is not installed: `pip install uv` (or put it on PATH)") from None
    return [uv.find_uv_bin()]


def header(image: Image, uv_version: str) -> str:
    return (
        f"# The {image.name} image's Python packages, every one == pinned with the sha256 of each\n"
        f"# file of its release. Generated by `python docker/lockreqs.py compile` ({uv_version})\n"
        f"# from {image.inputs.name} under constraints.txt; do not edit by hand.\n"
        f"{TARGET_LINE}\n"
    )


def compile_image(
    image: Image, uv: list[str], upgrade: Sequence[str], index_urls: Sequence[str]
) -> None:
    """Resolve `image`'s .in file into its lock (the .in file must be written already)."""
    rel = image.lock.relative_to(REPO_ROOT)
    cmd = [
        *uv,
        "pip",
        "compile",
        str(image.inputs.relative_to(REPO_ROOT)),
        "--constraints",
        str(CONSTRAINTS.relative_to(REPO_ROOT)),
        "--output-file",
        str(rel),
        "--python-version",
        TARGET_PYTHON,
        "--python-platform",
        TARGET_PLATFORM,
        "--generate-hashes",
        "--no-build",  # wheels only: no sdist is built at lock time or in the image
        "--no-header",
        "--quiet",
        *upgrade,
    ]
    for url in index_urls:
        cmd += ["--extra-index-url", url, "--index-strategy", "unsafe-best-match"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise LockProblem(f"uv pip compile failed for {image.name} (exit {done.returncode})")
    version = (
        subprocess.run([*uv, "--version"], capture_output=True, text=True, check=True)
        .stdout.split("(")[0]
        .strip()
    )  # "uv 0.13.10 (x86_64-unknown-linux-gnu)"
    body = image.lock.read_text(encoding="utf-8")
    body = "\n".join(line for line in body.splitlines() if not line.startswith("# target: "))
    lines = body.splitlines()
    while lines and lines[0].startswith("#"):  # the header of an earlier run
        lines.pop(0)
    image.lock.write_text(header(image, version) + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {rel} ({len(parse_lock(image.lock.read_text(encoding='utf-8')))} packages)")


def compile_all(args: argparse.Namespace) -> int:
    if args.comfyui_dir is not None:
        copy_comfyui_requirements(args.comfyui_dir)
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    comfyui_text = COMFYUI_REQUIREMENTS.read_text(encoding="utf-8")
    uv = uv_command()
    upgrade = ["--upgrade"] if args.upgrade else []
    for package in args.upgrade_package:
        upgrade += ["--upgrade-package", package]
    for image in IMAGES:
        image.inputs.write_text(render_inputs(image, pyproject, comfyui_text), encoding="utf-8")
        compile_image(image, uv, upgrade, args.torch_index_url)
    problems = check(comfyui_text)
    for problem in problems:
        print(f"lockreqs: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_compile = sub.add_parser("compile", help="resolve the locks (needs uv and the network)")
    p_compile.add_argument("--upgrade", action="store_true", help="ignore the current pins")
    p_compile.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME", help="repeatable"
    )
    p_compile.add_argument(
        "--comfyui-dir", type=Path, help="refresh comfyui.txt from this ComfyUI checkout"
    )
    p_compile.add_argument(
        "--torch-index-url",
        action="append",
        default=[],
        metavar="URL",
        help="extra index for another CUDA line's torch (build with TORCH_INDEX_URL=URL)",
    )
    sub.add_parser("check", help="offline: every package pinned, every requirement covered")
    args = parser.parse_args(argv)
    try:
        if args.command == "compile":
            return compile_all(args)
        problems = check()
    except (LockProblem, OSError) as exc:
        print(f"lockreqs: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"lockreqs: {problem}", file=sys.stderr)
    if not problems:
        print("lockreqs: the locks pin every package of both images")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
