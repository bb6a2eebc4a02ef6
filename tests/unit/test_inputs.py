"""fetch_bytes against real loopback servers: HTTP (tests.fakes.http_server) and moto S3."""

from __future__ import annotations

import base64
import datetime
import io
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from PIL import Image

from handler.errors import ErrorCode, JobError
from handler.inputs import decode_data_uri, fetch_bytes, load_input
from handler.settings import Settings
from handler.url_guard import make_http_client
from tests.fakes.http_server import LoopbackHTTPServer, Reply
from tests.fakes.s3_server import MotoS3, moto_s3_server

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # content is irrelevant to fetching


def loopback_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_http_inputs": True,
        "url_allowlist": "127.0.0.0/8",
        "fetch_connect_timeout_s": 2.0,
        "fetch_read_timeout_s": 2.0,
        "fetch_max_attempts": 3,
    }
    values.update(overrides)
    return Settings(**values)


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class StubResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.fixture
def server() -> Iterator[LoopbackHTTPServer]:
    with LoopbackHTTPServer() as srv:
        yield srv


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


async def fetch_error(url: str, settings: Settings, **kwargs: Any) -> JobError:
    with pytest.raises(JobError) as info:
        await fetch_bytes(url, settings, **kwargs)
    return info.value


# --- data: URIs ----------------------------------------------------------------------------


def test_base64_data_uri() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert decode_data_uri(uri, 10_000) == PNG


def test_base64_data_uri_with_percent_encoding_whitespace_and_no_padding() -> None:
    encoded = base64.b64encode(PNG[:100]).decode().rstrip("=")
    uri = (
        "data:;base64," + encoded[:40] + "\n" + encoded[40:].replace("+", "%2B").replace("/", "%2F")
    )
    assert decode_data_uri(uri, 10_000) == PNG[:100]


def test_percent_encoded_data_uri() -> None:
    assert decode_data_uri("data:image/png," + quote_from_bytes(PNG), 10_000) == PNG


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("data:image/png;base64", ErrorCode.INPUT_NOT_IMAGE),  # no comma
        ("data:image/png;base64,@@@not*base64", ErrorCode.INPUT_NOT_IMAGE),
        (
            "data:image/png;base64," + base64.b64encode(b"x" * 1001).decode(),
            ErrorCode.INPUT_TOO_LARGE,
        ),
        ("data:image/png," + "x" * 1001, ErrorCode.INPUT_TOO_LARGE),
        ("data:image/png," + "%41" * 1001, ErrorCode.INPUT_TOO_LARGE),
    ],
)
def test_bad_data_uris(uri: str, code: ErrorCode) -> None:
    with pytest.raises(JobError) as info:
        decode_data_uri(uri, 1000)
    assert info.value.code is code


def test_data_uri_at_exactly_the_cap_is_accepted() -> None:
    uri = "data:;base64," + base64.b64encode(b"y" * 1000).decode()
    assert len(decode_data_uri(uri, 1000)) == 1000


async def test_fetch_bytes_reads_data_uris() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert await fetch_bytes(uri, Settings()) == PNG


# --- HTTP ----------------------------------------------------------------------------------


async def test_http_fetch(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/a.png", Reply.ok(PNG, "image/png"))
    assert await fetch_bytes(server.url("/a.png"), loopback_settings()) == PNG


async def test_loopback_is_refused_without_allowlist(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/a.png", Reply.ok(PNG))
    error = await fetch_error(server.url("/a.png"), loopback_settings(url_allowlist=""))
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert server.requests == []


async def test_http_refused_unless_allowed(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/a.png", Reply.ok(PNG))
    error = await fetch_error(server.url("/a.png"), loopback_settings(allow_http_inputs=False))
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert server.requests == []


async def test_redirects_are_followed(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/start", Reply.redirect("/middle", 301))
    server.route("GET", "/middle", Reply.redirect(server.url("/a.png"), 307))
    server.route("GET", "/a.png", Reply.ok(PNG))
    assert await fetch_bytes(server.url("/start"), loopback_settings()) == PNG
    assert [r.path for r in server.requests] == ["/start", "/middle", "/a.png"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::ffff:169.254.169.254]/latest/",
        "http://10.0.0.1/a.png",
        "http://127.0.0.2/a.png",  # outside this test's /32 allow-list
        "s3://bucket/key.png",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_forbidden_target_is_refused(
    server: LoopbackHTTPServer, location: str
) -> None:
    server.route("GET", "/start", Reply.redirect(location))
    error = await fetch_error(server.url("/start"), loopback_settings(url_allowlist="127.0.0.1/32"))
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert len(server.requests) == 1


async def test_redirect_to_hostname_resolving_to_private_address_is_refused(
    server: LoopbackHTTPServer,
) -> None:
    # The hop passes the syntax check; the guarded connection refuses the resolved address.
    resolver = StubResolver({"internal.test": ["10.0.0.7"]})
    server.route("GET", "/start", Reply.redirect("http://internal.test/secret"))
    error = await fetch_error(server.url("/start"), loopback_settings(), resolve=resolver)
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert "http://internal.test/secret" in error.message
    assert "10.0.0.7" not in error.message  # internal DNS answers are not echoed
    assert resolver.calls == ["internal.test"]


async def test_redirect_loop_stops_after_five_redirects(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/loop", Reply.redirect("/loop"))
    error = await fetch_error(server.url("/loop"), loopback_settings())
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert len(server.requests) == 6  # the first request and five redirects


async def test_5xx_is_retried_with_backoff(
    server: LoopbackHTTPServer, sleep: SleepRecorder
) -> None:
    server.route("GET", "/a.png", Reply(503), Reply(502), Reply.ok(PNG))
    assert await fetch_bytes(server.url("/a.png"), loopback_settings(), sleep=sleep) == PNG
    assert len(server.requests) == 3
    assert len(sleep.delays) == 2 and all(d > 0 for d in sleep.delays)


async def test_5xx_until_attempts_run_out(server: LoopbackHTTPServer, sleep: SleepRecorder) -> None:
    server.route("GET", "/a.png", Reply(500))
    error = await fetch_error(server.url("/a.png"), loopback_settings(), sleep=sleep)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert "HTTP 500" in error.message
    assert len(server.requests) == 3 and len(sleep.delays) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_4xx_is_not_retried(
    server: LoopbackHTTPServer, sleep: SleepRecorder, status: int
) -> None:
    server.route("GET", "/a.png", Reply(status))
    error = await fetch_error(server.url("/a.png?token=s3cr3t"), loopback_settings(), sleep=sleep)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert f"HTTP {status}" in error.message
    assert "s3cr3t" not in error.message
    assert len(server.requests) == 1 and sleep.delays == []


async def test_slow_server_times_out_and_is_retried(
    server: LoopbackHTTPServer, sleep: SleepRecorder
) -> None:
    server.route("GET", "/slow.png", Reply(200, PNG, delay_s=2.0))
    settings = loopback_settings(fetch_read_timeout_s=0.2, fetch_max_attempts=2)
    error = await fetch_error(server.url("/slow.png"), settings, sleep=sleep)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert "timed out" in error.message
    assert len(server.requests) == 2 and len(sleep.delays) == 1


async def test_timeout_then_success(server: LoopbackHTTPServer, sleep: SleepRecorder) -> None:
    server.route("GET", "/a.png", Reply(200, PNG, delay_s=2.0), Reply.ok(PNG))
    settings = loopback_settings(fetch_read_timeout_s=0.2)
    assert await fetch_bytes(server.url("/a.png"), settings, sleep=sleep) == PNG
    assert len(sleep.delays) == 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_body_is_refused(server: LoopbackHTTPServer, chunked: bool) -> None:
    # chunked=True sends no Content-Length: the cap is enforced while streaming.
    server.route("GET", "/big.png", Reply(200, b"x" * 5000, chunked=chunked, chunk_size=512))
    error = await fetch_error(server.url("/big.png"), loopback_settings(max_input_bytes=1000))
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert len(server.requests) == 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_at_the_cap_is_accepted(server: LoopbackHTTPServer, chunked: bool) -> None:
    server.route("GET", "/a.png", Reply(200, b"x" * 1000, chunked=chunked, chunk_size=300))
    data = await fetch_bytes(server.url("/a.png"), loopback_settings(max_input_bytes=1000))
    assert data == b"x" * 1000


async def test_dns_failure(sleep: SleepRecorder) -> None:
    resolver = StubResolver({})
    error = await fetch_error(
        "http://nowhere.test/a.png", loopback_settings(), resolve=resolver, sleep=sleep
    )
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert "DNS" in error.message
    assert sleep.delays == []


async def test_connection_refused_is_not_retried(sleep: SleepRecorder) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await fetch_error(f"http://127.0.0.1:{port}/a.png", loopback_settings(), sleep=sleep)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert sleep.delays == []


async def test_connection_goes_to_the_checked_address(server: LoopbackHTTPServer) -> None:
    # One lookup per connection, and the socket is opened to that answer; the Host header
    # still names the host. A rebinding answer on the next connection is checked again.
    server.route("GET", "/a.png", Reply.ok(PNG))
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    settings = loopback_settings(url_allowlist="127.0.0.1/32")
    url = f"http://images.test:{server.port}/a.png"
    assert await fetch_bytes(url, settings, resolve=resolver) == PNG
    assert resolver.calls == ["images.test"]
    assert server.requests[0].headers["host"] == f"images.test:{server.port}"

    resolver.answers["images.test"] = ["10.0.0.5"]  # the name now points inside
    error = await fetch_error(url, settings, resolve=resolver)
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert len(server.requests) == 1


def self_signed_tls(tmp_path: Path, hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only that server's certificate)."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography (moto's dependency)")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    return server_context, ssl.create_default_context(cafile=str(cert_file))


async def test_https_pinned_connection_keeps_sni_and_certificate_check(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path, "images.test")
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    settings = loopback_settings(allow_http_inputs=False, url_allowlist="127.0.0.1/32")
    with LoopbackHTTPServer(tls=server_tls) as tls_server:
        tls_server.route("GET", "/a.png", Reply.ok(PNG))
        async with make_http_client(settings, resolve=resolver, ssl_context=client_tls) as client:
            # Connected to 127.0.0.1, yet the certificate was verified for images.test.
            url = f"https://images.test:{tls_server.port}/a.png"
            assert await fetch_bytes(url, settings, http=client) == PNG
            # The same certificate does not match the bare address: verification is on.
            error = await fetch_error(tls_server.url("/a.png"), settings, http=client)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert len(tls_server.requests) == 1
    assert tls_server.requests[0].headers["host"] == f"images.test:{tls_server.port}"


async def test_shared_guarded_client_is_used(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/a.png", Reply.ok(PNG))
    settings = loopback_settings()
    async with make_http_client(settings) as client:
        for _ in range(2):
            assert await fetch_bytes(server.url("/a.png"), settings, http=client) == PNG
    assert len(server.requests) == 2


async def test_plain_client_does_not_bypass_the_address_policy(
    server: LoopbackHTTPServer,
) -> None:
    server.route("GET", "/a.png", Reply.ok(PNG))
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    async with httpx.AsyncClient() as plain:
        error = await fetch_error(
            f"http://images.test:{server.port}/a.png",
            loopback_settings(url_allowlist=""),
            http=plain,
            resolve=resolver,
        )
    assert error.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert server.requests == []


async def test_load_input_sniffs_png_served_as_jpeg(server: LoopbackHTTPServer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(buffer, "PNG")
    server.route("GET", "/photo.jpg", Reply.ok(buffer.getvalue(), "image/jpeg"))
    decoded = await load_input(server.url("/photo.jpg"), loopback_settings())
    assert decoded.source_format == "PNG"
    assert decoded.image.size == (3, 2)


async def test_load_input_refuses_text(server: LoopbackHTTPServer) -> None:
    server.route("GET", "/a.png", Reply.ok(b"<html>not an image</html>", "image/png"))
    with pytest.raises(JobError) as info:
        await load_input(server.url("/a.png"), loopback_settings())
    assert info.value.code is ErrorCode.INPUT_NOT_IMAGE


# --- S3 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3_server() as running:
        yield running


async def test_s3_fetch(s3: MotoS3) -> None:
    bucket = s3.create_bucket()
    s3.client().put_object(Bucket=bucket, Key="in/photo.png", Body=PNG)
    assert await fetch_bytes(f"s3://{bucket}/in/photo.png", s3.settings()) == PNG


@pytest.mark.parametrize("missing", ["key", "bucket"])
async def test_s3_missing_object(s3: MotoS3, missing: str) -> None:
    bucket = s3.create_bucket() if missing == "key" else "no-such-bucket-for-this-test"
    error = await fetch_error(f"s3://{bucket}/absent.png", s3.settings())
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert "NoSuch" in error.message


async def test_s3_oversize_object(s3: MotoS3) -> None:
    bucket = s3.create_bucket()
    s3.client().put_object(Bucket=bucket, Key="big.png", Body=b"x" * 5000)
    error = await fetch_error(f"s3://{bucket}/big.png", s3.settings(max_input_bytes=1000))
    assert error.code is ErrorCode.INPUT_TOO_LARGE


ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


async def test_s3_access_denied(server: LoopbackHTTPServer) -> None:
    # An S3-compatible endpoint that denies: botocore parses the real error document.
    server.route(
        "GET", "/locked/photo.png", Reply(403, ACCESS_DENIED, {"Content-Type": "application/xml"})
    )
    settings = MotoS3(server.base_url).settings()
    error = await fetch_error("s3://locked/photo.png", settings)
    assert error.code is ErrorCode.INPUT_FETCH_FAILED
    assert "AccessDenied" in error.message
    assert len(server.requests) == 1  # 4xx: botocore does not retry either
