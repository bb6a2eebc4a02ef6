"""The README's "HTTP API, step by step" runs as written against `demo.sh --keep-running`.

The bash block is taken from the README itself (all but the line that starts the demo, which
this test starts), and run with curl and jq from a folder whose `.demo` is the demo's work
folder, so a README edit that breaks the walkthrough fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.real_models import require_u2netp
from tests.fakes.watched import Watched

REPO = Path(__file__).resolve().parents[2]
SECTION = "## The HTTP API, step by step"


def walkthrough() -> str:
    """The first bash block of the README's walkthrough section, without the demo's start."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(SECTION) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the walkthrough has no bash block"
    lines = block.group(1).splitlines()
    assert lines[0].startswith("bash scripts/demo.sh --double --keep-running")
    return "\n".join(lines[1:]) + "\n"


def test_the_walkthrough_is_a_bash_block_that_starts_the_demo() -> None:
    script = walkthrough()
    for step in ("/api/uploads", "/api/jobs", "/api/jobs/batch", "/cancel", "/api/me"):
        assert step in script


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq on PATH"
)
def test_readme_walkthrough_runs_against_the_demo(tmp_path: Path) -> None:
    require_u2netp()
    workdir = tmp_path / "demo"
    demo = Watched(
        [
            sys.executable,
            str(REPO / "scripts" / "demo.py"),
            "--double",
            "--keep-running",
            "--workdir",
            str(workdir),
        ],
        cwd=REPO,
        what="demo.py --double --keep-running",
    )
    try:
        url_file = workdir / "api" / "demo-api-url"
        demo.wait_for(url_file.exists, "the API URL file")
        here = tmp_path / "bff"
        here.mkdir()
        (here / ".demo").symlink_to(workdir)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough()],
            cwd=here,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": os.environ.get("PATH", "")},
            timeout=1800,  # catches a hang only: the steps poll a job that runs for seconds
        )
    finally:
        demo.proc.send_signal(signal.SIGINT)
        demo.wait_exit("stopping after SIGINT")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^204$", out, re.M), out  # the presigned POST stored the file
    statuses = re.findall(r"^(QUEUED|DISPATCHING|RUNNING|SUCCEEDED|FAILED|CANCELLED)$", out, re.M)
    assert statuses and statuses[-1] == "SUCCEEDED", out
    assert '"name": "u2netp"' in out and '"cost": 1' in out
    assert out.count('"status": "QUEUED"') >= 2  # the batch's two jobs
    assert '"status": "CANCELLED"' in out
    cutout = here / "cutout.png"
    assert cutout.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    me = [line for line in out.splitlines() if line.startswith('{"user_id"')]
    assert len(me) == 2 and '"held":2' in me[-1].replace(" ", ""), me
