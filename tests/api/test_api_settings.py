"""ApiSettings parsed from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api_stub.settings import ApiSettings


def test_defaults_serve_the_embedded_demo() -> None:
    settings = ApiSettings.from_env({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.storage == "local"
    assert settings.dispatch_attempts == 3
    assert settings.callback_url == "http://127.0.0.1:8080/api/webhooks/runpod"
    assert settings.job_costs["bg_remove"] == 1


def test_env_values_are_parsed() -> None:
    settings = ApiSettings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "JOB_COSTS": "upscale_2k=3, bg_remove=2",
            "WEBHOOK_SECRETS": "whsec_a, whsec_b",
            "MAX_INFLIGHT": "7",
            "RUNPOD_ENDPOINT_URL": "https://api.runpod.ai/v2/abc/",
            "X_SIGNATURE_ENABLED": "true",
            "CALLBACK_MASTER_KEY": "x" * 32,
            "WEBHOOK_URL": "",  # empty means unset
        }
    )
    assert settings.is_postgres
    assert settings.job_costs["upscale_2k"] == 3 and settings.job_costs["jpeg_to_png"] == 1
    assert [s.get_secret_value() for s in settings.webhook_secrets] == ["whsec_a", "whsec_b"]
    assert settings.max_inflight == 7 and settings.x_signature_enabled
    assert settings.runpod_endpoint_url == "https://api.runpod.ai/v2/abc"
    assert "x" * 32 not in repr(settings)  # secrets never print


@pytest.mark.parametrize(
    "env",
    [
        {"JOB_COSTS": "paint=1"},
        {"JOB_COSTS": "bg_remove"},
        {"CALLBACK_MASTER_KEY": "short"},
        {"STORAGE": "s3"},
        {"UPLOAD_TTL_S": "3600"},
        {"DISPATCH_ATTEMPTS": "0"},
        {"LEASE_S": "10", "RUNPOD_TIMEOUT_S": "30"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        ApiSettings.from_env(env)
