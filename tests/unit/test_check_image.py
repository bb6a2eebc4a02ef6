"""Static checks of scripts/check_image.sh, the local image build check (not run in CI: it
needs a Docker daemon and about 30 minutes)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_image.sh"
DOCKERFILE = REPO / "Dockerfile"


def script_text() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    return bash


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_bash(), str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


def help_text() -> str:
    result = run_script("--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def code_lines() -> list[str]:
    """The script's lines outside the --help heredoc and comments."""
    lines: list[str] = []
    in_help = False
    for line in script_text().splitlines():
        stripped = line.strip()
        if in_help:
            in_help = stripped != "EOF"
            continue
        if stripped.startswith("cat <<'EOF'"):
            in_help = True
            continue
        if stripped.startswith("#"):
            continue
        lines.append(line)
    return lines


def dockerfile_args() -> set[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.MULTILINE))


def test_script_is_valid_bash_and_strict() -> None:
    subprocess.run([_bash(), "-n", str(SCRIPT)], check=True, timeout=30)
    assert "set -euo pipefail" in script_text()
    assert SCRIPT.stat().st_mode & 0o111, "scripts/check_image.sh must be executable"


def test_help_documents_how_it_was_run_here() -> None:
    text = help_text()
    for needle in (
        # the daemon: trixie's docker.io unpacked, no bridge or iptables, host network
        "docker.io",
        "docker-buildx",
        "dpkg-deb -x",
        "--bridge=none",
        "--iptables=false",
        "--network=host",
        # base images: a debootstrapped Ubuntu 24.04 imported, a venv for the api stage
        "debootstrap",
        "docker import",
        "BASE_IMAGE",
        "PYTHON_IMAGE",
        "/usr/local/py",
        # the CA bundle of this machine's network
        "PIP_CERT",
        # ComfyUI served locally, its commit named
        "git daemon",
        "COMFYUI_REPO",
        "COMFYUI_COMMIT",
        # stand-in weights through the folder mirror, BiRefNet's quality not checked
        "build_tiny_models",
        "models-mirror",
        "MODELS_MIRROR",
        "SELFTEST_SEGMENTERS",
        "RANDOM weights",
        # the syntax line of the Dockerfile is dropped from the built copy
        "# syntax=",
        "/healthz",
    ):
        assert needle in text, needle


def test_never_pulls_from_a_registry() -> None:
    code = "\n".join(code_lines())
    assert not re.search(r"\bdocker\s+(image\s+)?pull\b", code)
    assert not re.search(r"--pull\b(?!=false)", code)
    assert "docker login" not in code
    # Base images must already be local: the script checks before it builds.
    assert 'docker image inspect "${image}"' in code


def test_builds_and_runs_on_the_host_network_only() -> None:
    code = "\n".join(code_lines())
    assert "--network=host" in code
    assert "docker network create" not in code
    for line in code_lines():
        if re.search(r"docker (run|create)\b", line):
            # each container names its network: host (api) or none (reading the self-test)
            assert re.search(r"--network=(host|none)", line), line


def test_build_args_exist_in_the_dockerfile() -> None:
    passed = set(re.findall(r"--build-arg\s+\"?([A-Z_][A-Z0-9_]*)=", script_text()))
    assert {"BASE_IMAGE", "PYTHON_IMAGE", "COMFYUI_REPO", "COMFYUI_COMMIT"} <= passed
    assert {"MODELS_MIRROR", "SELFTEST_SEGMENTERS"} <= passed
    missing = passed - dockerfile_args()
    assert not missing, f"build args the Dockerfile does not declare: {sorted(missing)}"


def test_builds_both_targets_and_the_mirror_stage_exists() -> None:
    code = "\n".join(code_lines())
    assert "--target api" in code
    assert "--target worker" in code
    assert '--build-context "models-mirror=' in code
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM scratch AS models-mirror$", dockerfile, flags=re.MULTILINE)
    for target in ("api", "worker", "selftest"):
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, flags=re.MULTILINE), target


def test_selftest_segmenters_reaches_the_selftest_run() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    stage = dockerfile.split("AS selftest", 1)[1].split("\nFROM ", 1)[0]
    assert "ARG SELFTEST_SEGMENTERS" in stage
    assert 'SEGMENTERS="${SELFTEST_SEGMENTERS}"' in stage
    # default: every served segmenter
    assert re.search(r"^ARG SELFTEST_SEGMENTERS=$", dockerfile, flags=re.MULTILINE)


def test_unknown_argument_fails() -> None:
    result = run_script("--bogus")
    assert result.returncode != 0
    assert "unknown argument" in result.stderr


def test_missing_required_env_fails_before_any_docker_call() -> None:
    result = run_script(env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "BASE_IMAGE" in result.stderr
