import base64
import hashlib
import hmac
import os
import time

import httpx
import pytest

from handler.callback import deliver, resolve_key, sign_headers
from handler.errors import ErrorCode, JobError
from handler.settings import Settings
from tests.fakes.worker_stack import standard_webhooks_accept

KEY = os.urandom(32)
FALLBACK = "fallback-secret-of-at-least-32-bytes!"


def test_per_job_key_used_when_long_enough() -> None:
    settings = Settings(callback_secret=FALLBACK)
    assert resolve_key(base64.b64encode(KEY).decode(), settings) == KEY


def test_short_key_falls_back_to_secret() -> None:
    settings = Settings(callback_secret=FALLBACK)
    assert resolve_key(base64.b64encode(b"short").decode(), settings) == FALLBACK.encode()
    assert resolve_key("%%%not base64", settings) == FALLBACK.encode()


@pytest.mark.parametrize(
    "secret", ["short", "whsec_%%%", "whsec_" + base64.b64encode(b"k").decode()]
)
def test_weak_or_malformed_callback_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ValueError, match="CALLBACK_SECRET"):
        Settings(callback_secret=secret)


def test_whsec_secret_is_base64_decoded() -> None:
    settings = Settings(callback_secret="whsec_" + base64.b64encode(KEY).decode())
    assert resolve_key(None, settings) == KEY


def test_no_key_at_all_fails_the_job() -> None:
    with pytest.raises(JobError) as info:
        resolve_key(base64.b64encode(b"short").decode(), Settings())
    assert info.value.code is ErrorCode.CALLBACK_KEY_MISSING


def test_signatures_match_the_two_schemes() -> None:
    body = b'{"job_id":"x","status":"SUCCEEDED"}'
    headers = sign_headers(body, KEY, message_id="msg_1", timestamp=1_700_000_000)
    expected_x = base64.b64encode(hmac.new(KEY, body, hashlib.sha256).digest()).decode()
    assert headers["x-signature"] == expected_x
    signed = b"msg_1.1700000000." + body
    expected_v1 = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected_v1}"


def test_the_standardwebhooks_library_accepts_our_signature_and_nothing_else() -> None:
    """Receivers verify with the library: it must accept exactly what the worker signed."""
    body = b'{"a":1}'
    headers = sign_headers(body, KEY, message_id="m", timestamp=int(time.time()))
    assert standard_webhooks_accept(body, headers, KEY)
    assert not standard_webhooks_accept(body + b" ", headers, KEY)
    assert not standard_webhooks_accept(body, headers, os.urandom(32))
    assert not standard_webhooks_accept(body, {}, KEY)


class Recorder:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses[min(len(self.requests) - 1, len(self.statuses) - 1)]
        return httpx.Response(status)


async def _no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize(
    ("statuses", "delivered", "attempts"),
    [
        ([200], True, 1),
        ([503, 502, 204], True, 3),
        ([429, 200], True, 2),
        ([408, 200], True, 2),
        ([400], False, 1),
        ([401], False, 1),
        ([500], False, 4),
    ],
)
async def test_delivery_retries_only_transient_failures(statuses, delivered, attempts) -> None:
    recorder = Recorder(statuses)
    settings = Settings(callback_max_attempts=4, callback_backoff_s=0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        report = await deliver(
            "https://cb.example/hook",
            b"{}",
            KEY,
            message_id="msg_x",
            settings=settings,
            http=http,
            sleep=_no_sleep,
        )
    assert report.delivered is delivered
    assert report.attempts == attempts == len(recorder.requests)
    ids = {r.headers["webhook-id"] for r in recorder.requests}
    assert ids == {"msg_x"}, "webhook-id must be stable across retries"
    for request in recorder.requests:
        assert standard_webhooks_accept(request.content, request.headers, KEY)


async def test_delivery_retries_connection_errors() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    settings = Settings(callback_max_attempts=5, callback_backoff_s=0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(flaky)) as http:
        report = await deliver(
            "https://cb.example/h",
            b"{}",
            KEY,
            message_id="m",
            settings=settings,
            http=http,
            sleep=_no_sleep,
        )
    assert report.delivered and report.attempts == 3
