"""The README's first command end to end: `scripts/demo.py --double` starts the control plane
(API, dispatcher, reconciler), the worker and the ComfyUI test double with tiny models as real
processes, runs one job per type through the public API, writes the contact sheet, and leaves
no process behind, also when interrupted.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from handler.settings import ALL_TYPES
from scripts.demokit import comfy
from scripts.demokit.contact_sheet import Picture, SheetRow, render_sheet
from scripts.demokit.procs import still_running
from scripts.demokit.results import Result, summary
from scripts.demokit.samples import write_samples
from scripts.demokit.stack import clean_env

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
RUN_TIMEOUT_S = 300  # generous for a noisy shared machine; the run itself takes ~30 s


@dataclass
class DemoRun:
    workdir: Path
    returncode: int
    stdout: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--double", "--workdir", str(workdir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        _stop(proc)
    return DemoRun(workdir, proc.returncode, stdout)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first, so a demo that overran still stops its own children."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _records(workdir: Path) -> list[dict]:
    return json.loads((workdir / "pids.json").read_text(encoding="utf-8"))


def test_the_demo_succeeds_for_every_type(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.stdout[-4000:]
    outputs = demo_run.workdir / "outputs"
    for job_type in ALL_TYPES:
        path = outputs / f"{job_type}.png"
        assert path.is_file(), f"no output for {job_type}"
        assert str(path) in demo_run.stdout, f"the demo did not print where {job_type} went"
    with Image.open(outputs / "bg_remove.png") as image:
        assert image.format == "PNG" and image.mode == "RGBA"
    with Image.open(outputs / "cutout_subject.png") as image:
        assert image.mode == "RGBA"
        assert image.width == image.height  # the demo asks for square=true
    with Image.open(outputs / "jpeg_to_png.png") as image:
        assert image.mode == "RGBA"
        alpha = image.getchannel("A")
        # The logo sits on pure white, keyed out with transparent=color: corners are clear,
        # the badge stays opaque.
        assert alpha.getpixel((2, 2)) == 0
        assert alpha.getpixel((300, 100)) == 255  # blue badge, above the white lettering
    with Image.open(outputs / "upscale_2k.png") as image:
        assert max(image.size) == 2048
        assert image.size == (2048, 1536)  # the 384x288 sample, aspect kept
    with Image.open(outputs / "white_bg_ecomm.png") as image:
        assert image.size == (2000, 2000)
    with Image.open(outputs / "object_remove.png") as image:
        assert image.size == (800, 600)


def test_progress_is_shown(demo_run: DemoRun) -> None:
    for step in range(1, 7):
        assert f"==> [{step}/6]" in demo_run.stdout
    for index, job_type in enumerate(ALL_TYPES, start=1):
        assert re.search(rf"\[{index}/6\] {job_type}\s+SUCCEEDED\s+\d+\.\ds", demo_run.stdout), (
            f"no progress line for {job_type}"
        )


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources += [value for name, value in attrs if name == "src" and value]


def test_the_contact_sheet_shows_every_input_and_output(demo_run: DemoRun) -> None:
    sheet = demo_run.workdir / "contact_sheet.html"
    assert f"Contact sheet: {sheet}" in demo_run.stdout
    parser = _Images()
    parser.feed(sheet.read_text(encoding="utf-8"))
    sources = set(parser.sources)
    for job_type in ALL_TYPES:
        assert f"outputs/{job_type}.png" in sources
    samples = {
        p.relative_to(demo_run.workdir).as_posix() for p in (demo_run.workdir / "samples").iterdir()
    }
    assert samples <= sources and len(samples) == len(ALL_TYPES)
    for source in sources:  # relative links that resolve beside the sheet
        assert (sheet.parent / source).is_file(), source
    text = sheet.read_text(encoding="utf-8")
    assert text.count('class="status SUCCEEDED"') == len(ALL_TYPES)
    # Each row names the models its workflow uses, at the versions of the lock the worker ran.
    lock = json.loads((demo_run.workdir / "tiny-models" / "models.lock").read_text("utf-8"))
    versions = {m["model"]: m["version"] for m in lock["models"] if m["role"] == "weights"}
    for job_type in ("object_remove", "upscale_2k"):
        binding = json.loads((REPO / "workflows" / f"{job_type}.binding.json").read_text("utf-8"))
        for model in binding["models"]:
            assert f"{model} {versions[model]}" in text, (job_type, model)


def test_no_process_outlives_the_demo(demo_run: DemoRun) -> None:
    records = _records(demo_run.workdir)
    names = {r["name"] for r in records}
    assert {"comfyui-double", "api-serve", "api-dispatcher", "api-reconciler", "worker"} <= names
    alive = [r for r in records if still_running(r)]
    assert not alive, f"left running: {alive}"


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    """Interrupt while the API starts (the double and the worker already run): the demo
    exits 130 and stops all it started."""
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--double", "--workdir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(r["name"] == "api-serve" for r in _safe_records(tmp_path)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the API never started:\n" + "".join(lines)
            time.sleep(0.1)
        running = {r["name"] for r in _safe_records(tmp_path) if still_running(r)}
        assert {"comfyui-double", "worker", "api-serve"} <= running
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        _stop(proc)
    reader.join(timeout=5)
    output = "".join(lines)
    assert code == 130, output
    assert "interrupted (SIGINT)" in output and "==> stopping" in output
    alive = [r for r in _records(tmp_path) if still_running(r)]
    assert not alive, f"left running: {alive}"


def _safe_records(workdir: Path) -> list[dict]:
    try:
        return _records(workdir)
    except (OSError, ValueError):
        return []


def test_unknown_types_are_refused_before_anything_starts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(DEMO),
            "--double",
            "--types",
            "bg_remove,sharpen",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown type(s) sharpen" in proc.stderr
    assert not (tmp_path / "pids.json").exists()


def test_demo_sh_bootstraps_then_runs_the_demo() -> None:
    script = REPO / "scripts" / "demo.sh"
    assert script.stat().st_mode & 0o111, "demo.sh must be executable"
    lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    boot = commands.index("bash scripts/bootstrap.sh")
    run = commands.index('exec .venv/bin/python scripts/demo.py "$@"')
    assert boot < run


def test_the_comfyui_pin_matches_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (COMFYUI_\w+)=(\S*)$", dockerfile, flags=re.MULTILINE))
    assert args["COMFYUI_REPO"] == comfy.COMFYUI_REPO
    assert args["COMFYUI_REF"] == comfy.COMFYUI_REF
    assert args["COMFYUI_COMMIT"] == comfy.COMFYUI_COMMIT


def test_samples_are_deterministic(tmp_path: Path) -> None:
    first = write_samples(tmp_path / "a", ALL_TYPES)
    second = write_samples(tmp_path / "b", ALL_TYPES)
    assert set(first) == set(ALL_TYPES)
    for job_type in ALL_TYPES:
        assert first[job_type].path.read_bytes() == second[job_type].path.read_bytes()
    with Image.open(first["jpeg_to_png"].path) as logo:
        assert logo.format == "JPEG" and logo.getpixel((1, 1)) == (255, 255, 255)
    with Image.open(first["upscale_2k"].path) as small:
        assert small.size == (384, 288)


def test_the_sheet_escapes_what_it_shows() -> None:
    row = SheetRow(
        job_type="bg_remove",
        status="FAILED",
        before=Picture("samples/a%20b.png", 10, 20),
        error='NODE_ERROR: <script>alert("x")</script>',
    )
    html = render_sheet([row], title="t & <t>", notes=["<b>n</b>"])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "t &amp; &lt;t&gt;" in html and "&lt;b&gt;n&lt;/b&gt;" in html
    assert 'src="samples/a%20b.png"' in html and "no output" in html


def _result(status: str, *, error: str | None = None, outputs: int = 1) -> Result:
    after = [Picture(f"outputs/x{i}.png", 8, 8, "png RGBA · 1 KiB") for i in range(outputs)]
    row = SheetRow("bg_remove", status, Picture("samples/x.png"), after=after, error=error)
    return Result("bg_remove", status, [Path(f"/w/outputs/x{i}.png") for i in range(outputs)], row)


def test_the_summary_names_outputs_and_failures() -> None:
    lines, failed = summary([_result("SUCCEEDED")])
    assert not failed and "/w/outputs/x0.png" in lines[0]
    lines, failed = summary(
        [_result("SUCCEEDED"), _result("FAILED", error="NODE_ERROR: boom", outputs=0)]
    )
    assert failed and "FAILED" in lines[1] and "NODE_ERROR: boom" in lines[1]
    _, failed = summary([_result("SUCCEEDED", outputs=0)])
    assert failed  # success without an output is not a success


def test_the_children_run_on_the_demos_own_defaults() -> None:
    env = clean_env(
        {"PATH": "/bin", "STORAGE": "s3", "DATABASE_URL": "postgresql://x", "RUNPOD_API_KEY": "k"}
        | {"SIMPLYPNG_MODELS_LOCK": "/x", "COMFYUI_URL": "http://elsewhere", "PORT": "1"}
    )
    assert env["PATH"] == "/bin"
    for name in (
        "STORAGE",
        "DATABASE_URL",
        "RUNPOD_API_KEY",
        "SIMPLYPNG_MODELS_LOCK",
        "COMFYUI_URL",
        "PORT",
    ):
        assert name not in env
    assert env["PYTHONPATH"].split(":")[0] == str(REPO)
