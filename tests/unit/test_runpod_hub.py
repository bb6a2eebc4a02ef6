"""Runpod Hub listing (.runpod/hub.json, .runpod/tests.json) and test_input.json: the Hub's
required keys, env inputs that the worker's settings read with the same defaults, and test
payloads that the worker's own contract accepts."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dockerfile_parse import DockerfileParser
from PIL import Image

from handler.contract import parse_payload
from handler.params import validate_params
from handler.settings import ALL_TYPES, Settings

ROOT = Path(__file__).resolve().parents[2]
HUB = json.loads((ROOT / ".runpod" / "hub.json").read_text(encoding="utf-8"))
TESTS = json.loads((ROOT / ".runpod" / "tests.json").read_text(encoding="utf-8"))
TEST_INPUT = json.loads((ROOT / "test_input.json").read_text(encoding="utf-8"))
CONFIG = HUB["config"]
ENV_INPUTS = [e for e in CONFIG["env"] if "input" in e]
# https://docs.runpod.io/pods/templates/secrets: `{{ RUNPOD_SECRET_name }}` in an env value.
RUNPOD_SECRET = re.compile(r"\{\{ RUNPOD_SECRET_[A-Za-z0-9_-]+ \}\}")
# Serverless GPU pools (https://docs.runpod.io/references/gpu-types#gpu-pools).
GPU_POOLS = {
    "AMPERE_16",
    "AMPERE_24",
    "ADA_24",
    "AMPERE_48",
    "ADA_48_PRO",
    "AMPERE_80",
    "ADA_80_PRO",
    "HOPPER_141",
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _torch_cuda() -> str:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    for instr in parser.structure:
        if instr["instruction"] == "ARG" and instr["value"].startswith("TORCH_CUDA="):
            return instr["value"].split("=", 1)[1]
    raise AssertionError("Dockerfile has no TORCH_CUDA default")


def _as_env(value: object) -> str:
    """A Hub default as the string the container sees."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_hub_json_has_the_required_fields():
    assert isinstance(HUB["title"], str) and HUB["title"]
    assert isinstance(HUB["description"], str) and 20 < len(HUB["description"]) < 600
    assert HUB["type"] == "serverless"
    assert HUB["category"] in {"audio", "embedding", "language", "video", "image"}
    assert CONFIG["runsOn"] == "GPU"
    assert isinstance(CONFIG["containerDiskInGb"], int) and CONFIG["containerDiskInGb"] >= 15
    assert CONFIG["gpuCount"] == 1
    pools = [part.strip() for part in CONFIG["gpuIds"].split(",")]
    assert pools and set(pools) <= GPU_POOLS, pools


@pytest.mark.parametrize("doc", [CONFIG, TESTS["config"]], ids=["hub", "tests"])
def test_allowed_cuda_versions_run_the_images_cuda_line(doc):
    versions = doc["allowedCudaVersions"]
    assert versions and all(re.fullmatch(r"\d+\.\d+", v) for v in versions)
    floor = _version(_torch_cuda())
    assert all(_version(v) >= floor for v in versions), (versions, floor)


def test_env_inputs_are_worker_settings_with_their_defaults():
    defaults = Settings()
    for entry in CONFIG["env"]:
        key = entry["key"]
        field = key.lower()
        assert field in Settings.model_fields, f"{key} is not read by handler.settings"
        if "value" in entry:
            Settings.from_env({key: str(entry["value"])})
            continue
        spec = entry["input"]
        assert {"name", "type", "description"} <= set(spec), key
        assert spec["type"] in {"string", "number", "boolean"}, key
        current = getattr(defaults, field)
        if spec["type"] == "boolean":
            assert spec["default"] is current, key
            assert Settings.from_env({key: spec["trueValue"]}).model_dump()[field] is True
            assert Settings.from_env({key: spec["falseValue"]}).model_dump()[field] is False
        elif field == "enabled_types":
            assert spec["default"].split(",") == list(ALL_TYPES) == current
        elif current is None:
            assert spec["default"] == "", key
        else:
            shown = current.get_secret_value() if hasattr(current, "get_secret_value") else current
            assert spec["default"] == shown, key
        for option in spec.get("options", []):
            Settings.from_env({key: option["value"]})
        if "options" in spec:
            assert spec["default"] in [o["value"] for o in spec["options"]], key


def test_secret_inputs_have_no_default_value():
    for entry in ENV_INPUTS:
        if re.search(r"SECRET|KEY", entry["key"]):
            assert entry["input"]["default"] == "", entry["key"]


def test_presets_set_known_inputs_to_valid_values():
    keys = {entry["key"] for entry in CONFIG["env"]}
    assert CONFIG["presets"]
    for preset in CONFIG["presets"]:
        assert preset["name"] and set(preset["defaults"]) <= keys, preset["name"]
        env = {key: _as_env(value) for key, value in preset["defaults"].items()}
        settings = Settings.from_env(env)
        assert settings.enabled_types, preset["name"]


def test_tests_json_runs_the_test_input_on_a_gpu():
    (test,) = TESTS["tests"]
    assert test["name"] and isinstance(test["timeout"], int)
    assert 60_000 <= test["timeout"] <= 900_000  # milliseconds: cold start + one job
    assert test["input"] == TEST_INPUT["input"]
    config = TESTS["config"]
    assert config["gpuTypeId"] == "NVIDIA GeForce RTX 4090" and config["gpuCount"] == 1
    for entry in config["env"]:
        Settings.from_env({entry["key"]: entry["value"]})


def test_tests_json_gives_the_worker_somewhere_to_upload():
    """The test job uploads to s3://simplypng-test/...: its env carries every S3 setting, the
    endpoint and credentials as Runpod secret references. This checks the wiring only: the
    Hub build resolves them only if the publishing account holds those secrets (and the
    bucket exists there); the docs give tests.json env no other way to hold a secret."""
    env = {entry["key"]: entry["value"] for entry in TESTS["config"]["env"]}
    assert len(env) == len(TESTS["config"]["env"]), "duplicate keys"
    prefix = urlsplit(TESTS["tests"][0]["input"]["output_prefix"])
    assert prefix.scheme == "s3"
    s3_keys = {key for key in env if key.startswith("S3_")}
    assert s3_keys == {
        "S3_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ADDRESSING_STYLE",
    }
    for key in ("S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert RUNPOD_SECRET.fullmatch(env[key]), f"{key} must be a Runpod secret reference"
    for key, value in env.items():
        if RUNPOD_SECRET.fullmatch(value) is None:
            assert not re.search(r"SECRET|KEY_ID", key), f"{key} holds a literal credential"
    settings = Settings.from_env(env)
    assert settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None
    assert settings.s3_endpoint_url == env["S3_ENDPOINT_URL"]


def test_test_input_is_a_valid_job_for_the_worker():
    assert set(TEST_INPUT) == {"input"}
    payload = parse_payload(TEST_INPUT["input"], max_inputs=8, max_timeout_s=3600)
    assert uuid.UUID(payload.job_id).version == 4
    assert payload.type == "jpeg_to_png" and payload.webhook_url is None
    validate_params(payload.type, payload.params)
    prefix = urlsplit(payload.output_prefix)
    assert prefix.scheme == "s3" and prefix.hostname == "simplypng-test"
    assert prefix.path == f"/outputs/{payload.job_id}/"
    assert payload.auth is not None
    assert len(base64.b64decode(payload.auth.callback_hmac, validate=True)) >= 32


def test_test_input_carries_a_real_jpeg_inline():
    (ref,) = TEST_INPUT["input"]["inputs"]
    header, _, data = ref["url"].partition(",")
    assert header == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert min(image.size) >= 16 and max(image.size) <= 256
