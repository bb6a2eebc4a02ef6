"""scripts/fetch_models.py against a real HTTP server on loopback with Range support."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fakes.scripts import fetch_models_alone, load_file

REPO = Path(__file__).resolve().parents[2]
fetch_models = load_file(REPO / "scripts" / "fetch_models.py", "fetch_models")

ALPHA = os.urandom(300_000)
BETA = os.urandom(40_000)


@dataclass
class Behaviour:
    """What the test server does; tests change it between runs."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # honour Range requests
    drop_after: int | None = None  # close the first response after this many body bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        b = self.behaviour
        b.requests.append((self.path, self.headers.get("Range")))
        body = b.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        if b.ranges and header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if b.drop_after is not None:
            self.wfile.write(chunk[: b.drop_after])
            b.drop_after = None
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour(files={"/alpha.bin": ALPHA, "/beta.bin": BETA})
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", behaviour
    httpd.shutdown()
    httpd.server_close()


def _entry(base: str, name: str, body: bytes, tasks: list[str], **changes) -> dict:
    entry = {
        "name": f"{name}/{name}.bin",
        "model": name,
        "role": "weights",
        "tasks": tasks,
        "version": f"test/{name}@1",
        "url": f"{base}/{name}.bin",
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "licence": "MIT",
        "licence_url": "https://example.invalid/LICENSE",
        "dest": f"sub/{name}.bin",
    }
    entry.update(changes)
    return entry


def _lock(tmp_path: Path, *entries: dict) -> Path:
    path = tmp_path / "models.lock"
    path.write_text(json.dumps({"lock_version": 1, "models": list(entries)}), encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path, server):
    base, behaviour = server
    lock = _lock(
        tmp_path,
        _entry(base, "alpha", ALPHA, ["bg_remove"]),
        _entry(base, "beta", BETA, ["upscale_2k"]),
    )
    dest = tmp_path / "models"
    return lock, dest, behaviour


def _run(lock: Path, dest: Path, *extra: str) -> int:
    return fetch_models.main(["--lock", str(lock), "--dest", str(dest), "--retries", "2", *extra])


def test_full_download_verifies_and_leaves_no_part(setup, capsys):
    lock, dest, behaviour = setup
    assert _run(lock, dest) == 0
    assert (dest / "sub/alpha.bin").read_bytes() == ALPHA
    assert (dest / "sub/beta.bin").read_bytes() == BETA
    assert not list(dest.rglob("*.part"))
    assert [r for r, _ in behaviour.requests] == ["/alpha.bin", "/beta.bin"]
    assert "100%" in capsys.readouterr().out


def test_second_run_is_idempotent(setup):
    lock, dest, behaviour = setup
    assert _run(lock, dest) == 0
    behaviour.requests.clear()
    assert _run(lock, dest) == 0
    assert behaviour.requests == []


def test_resumes_from_a_partial_part_file(setup):
    lock, dest, behaviour = setup
    part = dest / "sub/alpha.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ALPHA[:100_000])
    assert _run(lock, dest, "--tasks", "bg_remove") == 0
    assert behaviour.requests == [("/alpha.bin", "bytes=100000-")]
    assert (dest / "sub/alpha.bin").read_bytes() == ALPHA


def test_resumes_after_the_connection_drops_mid_file(setup):
    lock, dest, behaviour = setup
    behaviour.drop_after = 120_000
    assert _run(lock, dest, "--tasks", "bg_remove") == 0
    assert behaviour.requests == [("/alpha.bin", None), ("/alpha.bin", "bytes=120000-")]
    assert (dest / "sub/alpha.bin").read_bytes() == ALPHA


def test_server_without_range_support_restarts_cleanly(setup):
    lock, dest, behaviour = setup
    behaviour.ranges = False
    part = dest / "sub/alpha.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ALPHA[:100_000])
    assert _run(lock, dest, "--tasks", "bg_remove") == 0
    assert (dest / "sub/alpha.bin").read_bytes() == ALPHA  # not prefix + whole file


def test_corrupt_partial_file_is_discarded_and_downloaded_again(setup):
    lock, dest, behaviour = setup
    part = dest / "sub/alpha.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 100_000)
    assert _run(lock, dest, "--tasks", "bg_remove") == 0
    assert behaviour.requests == [("/alpha.bin", "bytes=100000-"), ("/alpha.bin", None)]
    assert (dest / "sub/alpha.bin").read_bytes() == ALPHA


def test_oversized_partial_file_is_discarded(setup):
    lock, dest, behaviour = setup
    part = dest / "sub/beta.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(BETA) + 5))
    assert _run(lock, dest, "--tasks", "upscale_2k") == 0
    assert behaviour.requests == [("/beta.bin", None)]
    assert (dest / "sub/beta.bin").read_bytes() == BETA


def test_sha256_mismatch_is_refused(tmp_path, server, capsys):
    base, _ = server
    lock = _lock(tmp_path, _entry(base, "alpha", ALPHA, ["bg_remove"], sha256="0" * 64))
    dest = tmp_path / "models"
    assert _run(lock, dest) == 1
    assert not (dest / "sub/alpha.bin").exists()
    assert not list(dest.rglob("*.part"))
    assert "sha256 mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("delta", [-1, 1])
def test_size_mismatch_is_refused(tmp_path, server, delta, capsys):
    base, _ = server
    lock = _lock(tmp_path, _entry(base, "alpha", ALPHA, ["bg_remove"], size=len(ALPHA) + delta))
    dest = tmp_path / "models"
    assert _run(lock, dest) == 1
    assert not (dest / "sub/alpha.bin").exists()
    assert not list(dest.rglob("*.part"))
    err = capsys.readouterr().err
    assert ("more than the pinned" in err) if delta < 0 else ("size" in err)


def test_subset_by_task_and_by_model(setup):
    lock, dest, _ = setup
    assert _run(lock, dest, "--tasks", "upscale_2k") == 0
    assert (dest / "sub/beta.bin").exists()
    assert not (dest / "sub/alpha.bin").exists()
    assert _run(lock, dest, "--models", "alpha") == 0
    assert (dest / "sub/alpha.bin").exists()
    assert _run(lock, dest, "--tasks", "all") == 0


def test_no_selected_entry_is_a_no_op(setup, capsys):
    # The image build runs each model's stage with BAKE_TASKS; a model no baked task needs
    # must leave the stage empty, not fail the build.
    lock, dest, behaviour = setup
    assert _run(lock, dest, "--tasks", "object_remove") == 0
    assert behaviour.requests == []
    assert not dest.exists()
    assert "nothing to fetch" in capsys.readouterr().out


def test_verify_only_downloads_nothing_and_detects_corruption(setup):
    lock, dest, behaviour = setup
    assert _run(lock, dest, "--verify-only") == 1
    assert behaviour.requests == []
    assert _run(lock, dest) == 0
    assert _run(lock, dest, "--verify-only") == 0
    target = dest / "sub/alpha.bin"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only the sha256 can tell
    target.write_bytes(bytes(data))
    assert _run(lock, dest, "--verify-only") == 1


def test_a_wrong_file_in_place_is_replaced(setup):
    lock, dest, _ = setup
    target = dest / "sub/beta.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"stale")
    assert _run(lock, dest, "--tasks", "upscale_2k") == 0
    assert target.read_bytes() == BETA


def test_unpinned_entry_needs_allow_unpinned(tmp_path, server):
    base, behaviour = server
    lock = _lock(
        tmp_path, _entry(base, "beta", BETA, ["upscale_2k"], sha256=None, verify="pending")
    )
    dest = tmp_path / "models"
    assert _run(lock, dest) == 1
    assert behaviour.requests == []
    assert _run(lock, dest, "--allow-unpinned") == 0
    assert (dest / "sub/beta.bin").read_bytes() == BETA


def test_non_commercial_licence_is_refused(tmp_path, server):
    base, behaviour = server
    lock = _lock(tmp_path, _entry(base, "beta", BETA, ["upscale_2k"], licence="CC-BY-NC-4.0"))
    assert _run(lock, tmp_path / "models") == 1
    assert behaviour.requests == []


def test_http_error_fails_the_file(tmp_path, server, capsys):
    base, _ = server
    lock = _lock(tmp_path, _entry(base, "gone", b"x", ["bg_remove"]))
    assert _run(lock, tmp_path / "models") == 1
    assert "HTTP 404" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{not json", '{"models": {}}', '{"models": [{"name": "x"}]}'])
def test_unreadable_lock_is_a_usage_error(tmp_path, text):
    bad = tmp_path / "models.lock"
    bad.write_text(text, encoding="utf-8")
    assert _run(bad, tmp_path / "models") == 2


def test_runs_on_the_standard_library_with_only_the_lock_reader(tmp_path, server):
    # The image build copies the script and handler/models_lock.py into a bare Python stage;
    # -S -I hides site-packages and the checkout.
    base, _ = server
    lock = _lock(tmp_path, _entry(base, "beta", BETA, ["upscale_2k"]))
    alone = fetch_models_alone(tmp_path / "fetch")
    cmd = [
        sys.executable,
        "-S",
        "-I",
        str(alone),
        "--lock",
        str(lock),
        "--dest",
        str(tmp_path / "m"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m/sub/beta.bin").read_bytes() == BETA
