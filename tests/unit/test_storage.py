"""Output stores against moto's S3 server and a loopback HTTP server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from handler.contract import JobPayload
from handler.errors import ErrorCode, JobError
from handler.settings import Settings
from handler.storage import (
    PrefixPutStore,
    PresignedListStore,
    S3Store,
    backoff_delay,
    make_store,
)
from handler.url_guard import make_http_client
from tests.fakes.http_server import LoopbackHTTPServer, Reply
from tests.fakes.s3_server import MotoS3, moto_s3_server

JOB_ID = "3f1f8a52-2d4e-4c1b-9a7e-0b6f1c2d3e4f"
DATA = b"\x89PNG\r\n\x1a\n" + b"payload" * 100


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_http_inputs": True,
        "url_allowlist": "127.0.0.0/8",
        "upload_max_attempts": 3,
        "upload_timeout_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def payload(**fields: Any) -> JobPayload:
    return JobPayload.model_validate(
        {
            "job_id": JOB_ID,
            "type": "bg_remove",
            "inputs": [{"url": "https://x.test/a.png"}],
            **fields,
        }
    )


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def server() -> Iterator[LoopbackHTTPServer]:
    with LoopbackHTTPServer() as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(settings_for()) as client:
        yield client


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3_server() as running:
        yield running


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_grows_is_jittered_and_capped() -> None:
    low = [backoff_delay(n, base=0.1, cap=1.0, rng=lambda: 0.0) for n in range(1, 7)]
    high = [backoff_delay(n, base=0.1, cap=1.0, rng=lambda: 1.0) for n in range(1, 7)]
    assert low == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert high == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


# --- S3 --------------------------------------------------------------------------------------


async def test_s3_store_puts_object_and_reports_s3_url(s3: MotoS3, http: httpx.AsyncClient) -> None:
    bucket = s3.create_bucket()
    store = make_store(payload(output_prefix=f"s3://{bucket}/jobs/{JOB_ID}/"), s3.settings(), http)
    assert isinstance(store, S3Store)
    url = await store.put("out_00.png", DATA, "image/png")
    assert url == f"s3://{bucket}/jobs/{JOB_ID}/out_00.png"
    obj = s3.client().get_object(Bucket=bucket, Key=f"jobs/{JOB_ID}/out_00.png")
    assert obj["Body"].read() == DATA
    assert obj["ContentType"] == "image/png"


async def test_s3_store_missing_bucket_fails_without_retry(s3: MotoS3) -> None:
    sleep = SleepRecorder()
    store = S3Store("no-such-bucket-here", "p/", s3.settings(), sleep=sleep)
    with pytest.raises(JobError) as info:
        await store.put("out_00.png", DATA, "image/png")
    assert info.value.code is ErrorCode.OUTPUT_UPLOAD_FAILED
    assert "NoSuchBucket" in info.value.message
    assert sleep.delays == []


async def test_s3_store_retries_5xx(server: LoopbackHTTPServer) -> None:
    # The loopback server plays an S3-compatible endpoint that is briefly unavailable.
    server.route("PUT", "/bucket/*", Reply(503), Reply(503), Reply(200, headers={"ETag": '"abc"'}))
    sleep = SleepRecorder()
    store = S3Store(
        "bucket", "out/", MotoS3(server.base_url).settings(upload_max_attempts=3), sleep=sleep
    )
    assert await store.put("out_00.png", DATA, "image/png") == "s3://bucket/out/out_00.png"
    puts = server.requests_for("PUT")
    assert len(puts) == 3 and puts[-1].body == DATA and puts[-1].path == "/bucket/out/out_00.png"
    assert len(sleep.delays) == 2


async def test_s3_store_gives_up_after_max_attempts(server: LoopbackHTTPServer) -> None:
    server.route("PUT", "/bucket/*", Reply(500))
    store = S3Store(
        "bucket", "", MotoS3(server.base_url).settings(upload_max_attempts=2), sleep=SleepRecorder()
    )
    with pytest.raises(JobError) as info:
        await store.put("out_00.png", DATA, "image/png")
    assert info.value.code is ErrorCode.OUTPUT_UPLOAD_FAILED
    assert "2 attempts" in info.value.message
    assert len(server.requests_for("PUT")) == 2


async def test_s3_store_uses_configured_credentials(server: LoopbackHTTPServer) -> None:
    server.route("PUT", "/bucket/*", Reply(200))
    settings = MotoS3(server.base_url).settings(s3_access_key_id="AKIDEXAMPLEKEY")
    await S3Store("bucket", "", settings).put("out_00.png", DATA, "image/png")
    auth = server.requests_for("PUT")[0].headers["authorization"]
    assert "Credential=AKIDEXAMPLEKEY/" in auth


# --- PUT under a signed prefix ---------------------------------------------------------------


async def test_prefix_put_keeps_query_and_reports_url_without_it(
    server: LoopbackHTTPServer, http: httpx.AsyncClient
) -> None:
    server.route("PUT", "/uploads/*", Reply(201))
    prefix = server.url(f"/uploads/{JOB_ID}/?token=s3cr3t&exp=99")
    store = make_store(payload(output_prefix=prefix), settings_for(), http)
    assert isinstance(store, PrefixPutStore)
    url = await store.put("out_00.webp", DATA, "image/webp")
    assert url == server.url(f"/uploads/{JOB_ID}/out_00.webp")
    (put,) = server.requests_for("PUT")
    assert put.path == f"/uploads/{JOB_ID}/out_00.webp"
    assert put.query == "token=s3cr3t&exp=99"
    assert put.body == DATA
    assert put.headers["content-type"] == "image/webp"
    assert put.headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize("transient", [503, 502, 429])
async def test_prefix_put_retries_transient_statuses(
    server: LoopbackHTTPServer, http: httpx.AsyncClient, transient: int
) -> None:
    server.route("PUT", "/up/*", Reply(transient), Reply(200))
    sleep = SleepRecorder()
    store = PrefixPutStore(server.url("/up/"), settings_for(), http, sleep=sleep)
    await store.put("out_00.png", DATA, "image/png")
    assert len(server.requests_for("PUT")) == 2 and len(sleep.delays) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 413])
async def test_prefix_put_does_not_retry_client_errors_and_hides_the_token(
    server: LoopbackHTTPServer, http: httpx.AsyncClient, status: int
) -> None:
    server.route("PUT", "/up/*", Reply(status))
    sleep = SleepRecorder()
    store = PrefixPutStore(server.url("/up/?sig=s3cr3t"), settings_for(), http, sleep=sleep)
    with pytest.raises(JobError) as info:
        await store.put("out_00.png", DATA, "image/png")
    assert info.value.code is ErrorCode.OUTPUT_UPLOAD_FAILED
    assert f"HTTP {status}" in info.value.message and "out_00.png" in info.value.message
    assert "s3cr3t" not in info.value.message and "sig=" not in info.value.message
    assert len(server.requests_for("PUT")) == 1 and sleep.delays == []


async def test_prefix_put_gives_up_after_max_attempts(
    server: LoopbackHTTPServer, http: httpx.AsyncClient
) -> None:
    server.route("PUT", "/up/*", Reply(500))
    store = PrefixPutStore(
        server.url("/up/?sig=s3cr3t"), settings_for(), http, sleep=SleepRecorder()
    )
    with pytest.raises(JobError) as info:
        await store.put("out_00.png", DATA, "image/png")
    assert "HTTP 500" in info.value.message and "3 attempts" in info.value.message
    assert "s3cr3t" not in info.value.message
    assert len(server.requests_for("PUT")) == 3


async def test_prefix_put_timeout_is_retried(server: LoopbackHTTPServer) -> None:
    server.route("PUT", "/up/*", Reply(200, delay_s=2.0), Reply(200))
    settings = settings_for(upload_timeout_s=0.2)
    sleep = SleepRecorder()
    async with make_http_client(settings) as client:
        store = PrefixPutStore(server.url("/up/"), settings, client, sleep=sleep)
        await store.put("out_00.png", DATA, "image/png")
    assert len(server.requests_for("PUT")) == 2 and len(sleep.delays) == 1


async def test_prefix_put_connection_errors_are_retried(http: httpx.AsyncClient) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = SleepRecorder()
    store = PrefixPutStore(f"http://127.0.0.1:{port}/up/", settings_for(), http, sleep=sleep)
    with pytest.raises(JobError) as info:
        await store.put("out_00.png", DATA, "image/png")
    assert "connection failed" in info.value.message
    assert len(sleep.delays) == 2


async def test_upload_to_a_host_resolving_inside_is_refused_at_connect() -> None:
    settings = settings_for(url_allowlist="")
    sleep = SleepRecorder()
    async with make_http_client(settings, resolve=lambda host, port: ["10.0.0.9"]) as client:
        store = PrefixPutStore("http://uploads.test/up/", settings, client, sleep=sleep)
        with pytest.raises(JobError) as info:
            await store.put("out_00.png", DATA, "image/png")
    assert info.value.code is ErrorCode.OUTPUT_UPLOAD_FAILED
    assert sleep.delays == []  # a refused address is not transient


# --- presigned URL list ----------------------------------------------------------------------


async def test_presigned_list_uses_targets_in_order(
    server: LoopbackHTTPServer, http: httpx.AsyncClient
) -> None:
    server.route("PUT", "/a", Reply(200))
    server.route("PUT", "/b", Reply(200))
    targets = [
        {"put_url": server.url("/a?X-Amz-Signature=1"), "url": "https://cdn.test/a.png"},
        {"put_url": server.url("/b?X-Amz-Signature=2"), "url": "https://cdn.test/b.png"},
    ]
    store = make_store(payload(outputs=targets), settings_for(), http)
    assert isinstance(store, PresignedListStore)
    assert await store.put("out_00.png", b"first", "image/png") == "https://cdn.test/a.png"
    assert await store.put("out_01.png", b"second", "image/png") == "https://cdn.test/b.png"
    assert [(r.path, r.query, r.body) for r in server.requests_for("PUT")] == [
        ("/a", "X-Amz-Signature=1", b"first"),
        ("/b", "X-Amz-Signature=2", b"second"),
    ]
    with pytest.raises(JobError) as info:
        await store.put("out_02.png", b"third", "image/png")
    assert info.value.code is ErrorCode.OUTPUT_UPLOAD_FAILED
    assert "2 presigned" in info.value.message
    assert len(server.requests_for("PUT")) == 2


async def test_presigned_put_to_moto(s3: MotoS3) -> None:
    bucket = s3.create_bucket()
    put_url = s3.client().generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "signed/out.png"}, ExpiresIn=300
    )
    settings = s3.settings(allow_http_inputs=True, url_allowlist="127.0.0.0/8")
    async with make_http_client(settings) as client:
        store = make_store(
            payload(outputs=[{"put_url": put_url, "url": "https://cdn.test/out.png"}]),
            settings,
            client,
        )
        assert await store.put("out_00.png", DATA, "image/png") == "https://cdn.test/out.png"
    assert s3.client().get_object(Bucket=bucket, Key="signed/out.png")["Body"].read() == DATA


# --- choosing a store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"output_prefix": "ftp://files.test/out/"}, "output_prefix"),
        ({"output_prefix": "http://files.test/out/"}, "output_prefix"),  # http not allowed
        ({"output_prefix": "https://169.254.169.254/out/"}, "output_prefix"),
        ({"output_prefix": "https://user:pw@files.test/out/"}, "output_prefix"),
        ({"output_prefix": "s3:///no-bucket/"}, "output_prefix"),
        ({"output_prefix": "s3://bucket/prefix/?x=1"}, "output_prefix"),
        (
            {"outputs": [{"put_url": "s3://bucket/key", "url": "https://cdn.test/a"}]},
            "outputs.0.put_url",
        ),
        (
            {"outputs": [{"put_url": "http://10.0.0.1/a", "url": "https://cdn.test/a"}]},
            "outputs.0.put_url",
        ),
    ],
)
async def test_bad_targets_are_invalid_payload(
    fields: dict[str, Any], field: str, http: httpx.AsyncClient
) -> None:
    settings = Settings(allow_http_inputs=False)
    with pytest.raises(JobError) as info:
        make_store(payload(**fields), settings, http)
    assert info.value.code is ErrorCode.INVALID_PAYLOAD
    assert info.value.details == {"field": field}
    assert "pw" not in info.value.message


async def test_outputs_list_wins_over_prefix(http: httpx.AsyncClient) -> None:
    store = make_store(
        payload(
            output_prefix="s3://bucket/p/",
            outputs=[{"put_url": "https://files.test/a?sig=1", "url": "https://cdn.test/a"}],
        ),
        Settings(),
        http,
    )
    assert isinstance(store, PresignedListStore)


@pytest.mark.parametrize("name", ["../escape.png", "a/b.png", "", ".hidden", "out 1.png"])
async def test_unsafe_names_are_programming_errors(name: str, http: httpx.AsyncClient) -> None:
    store = PrefixPutStore("https://files.test/up/", Settings(), http)
    with pytest.raises(ValueError):
        await store.put(name, DATA, "image/png")
