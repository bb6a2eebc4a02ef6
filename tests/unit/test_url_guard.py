"""URL policy: pure checks, no network (hostnames go through a stub resolver)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from handler.errors import ErrorCode, JobError
from handler.settings import Settings
from handler.url_guard import check_ip, check_url, redact_url, resolve_checked

BLOCKED = [
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "127.0.0.1",
    "127.255.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "169.254.169.254",  # cloud metadata
    "169.254.1.1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "198.18.0.1",
    "192.0.0.8",
    "192.0.2.1",  # documentation
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "::127.0.0.1",  # deprecated IPv4-compatible
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above CGNAT
    "172.32.0.1",  # just above 172.16/12
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_addresses_are_refused(address: str) -> None:
    with pytest.raises(JobError) as info:
        check_ip(address)
    assert info.value.code is ErrorCode.INPUT_FORBIDDEN_URL


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert check_ip(address) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    ("address", "allowlist", "allowed"),
    [
        ("127.0.0.1", ["127.0.0.0/8"], True),
        ("127.3.2.1", ["127.0.0.0/8"], True),
        ("::ffff:127.0.0.1", ["127.0.0.0/8"], True),  # mapped form matches the v4 entry
        ("10.0.0.1", ["127.0.0.0/8"], False),
        ("::1", ["127.0.0.0/8"], False),
        ("::1", ["::1/128"], True),
        ("169.254.169.254", ["10.0.0.0/8"], False),
    ],
)
def test_allowlist_overrides_only_what_it_covers(
    address: str, allowlist: list[str], allowed: bool
) -> None:
    if allowed:
        assert check_ip(address, allowlist) == ipaddress.ip_address(address)
    else:
        with pytest.raises(JobError):
            check_ip(address, allowlist)


HTTPS_ONLY = Settings()
HTTP_OK = Settings(allow_http_inputs=True)


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("ftp://example.com/a.png", HTTP_OK),
        ("file:///etc/passwd", HTTP_OK),
        ("gopher://example.com/", HTTP_OK),
        ("javascript:alert(1)", HTTP_OK),
        ("example.com/a.png", HTTP_OK),
        ("", HTTP_OK),
        ("http://example.com/a.png", HTTPS_ONLY),
        ("https://user:secret@example.com/a.png", HTTP_OK),
        ("https://:@example.com/a.png", HTTP_OK),
        ("https://127.0.0.1/a.png", HTTP_OK),
        ("https://[::1]/a.png", HTTP_OK),
        ("https://[::ffff:127.0.0.1]/a.png", HTTP_OK),
        ("https://[::ffff:7f00:1]/a.png", HTTP_OK),
        ("http://169.254.169.254/latest/meta-data/", HTTP_OK),
        ("https://[fd00:ec2::254]/latest/", HTTP_OK),
        ("https://100.64.0.1/", HTTP_OK),
        ("https://0.0.0.0/", HTTP_OK),
        ("https://2130706433/", HTTP_OK),  # 127.0.0.1 as one number
        ("https://0x7f.1/", HTTP_OK),
        ("https://127.1/", HTTP_OK),
        ("https://017700000001/", HTTP_OK),
        ("https:///a.png", HTTP_OK),
        ("https://exa mple.com/", HTTP_OK),
        ("https://example.com:99999/", HTTP_OK),
        ("s3://bucket", HTTP_OK),
        ("s3:///key.png", HTTP_OK),
        ("s3://user@bucket/key.png", HTTP_OK),
    ],
)
def test_forbidden_urls(url: str, settings: Settings) -> None:
    with pytest.raises(JobError) as info:
        check_url(url, settings)
    assert info.value.code is ErrorCode.INPUT_FORBIDDEN_URL
    assert "secret" not in info.value.message


def test_https_url_is_parsed() -> None:
    target = check_url("HTTPS://Example.COM/a.png?sig=1", HTTPS_ONLY)
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 443)


def test_http_allowed_when_configured_with_explicit_port() -> None:
    target = check_url("http://example.com:8080/a.png", HTTP_OK)
    assert (target.scheme, target.host, target.port) == ("http", "example.com", 8080)


def test_idn_host_is_checked_in_ascii_form() -> None:
    assert check_url("https://münchen.de/a.png", HTTPS_ONLY).host == "xn--mnchen-3ya.de"


def test_public_ip_literal_passes() -> None:
    target = check_url("https://[2606:4700:4700::1111]/a.png", HTTPS_ONLY)
    assert target.host == "2606:4700:4700::1111"


def test_loopback_literal_passes_with_allowlist() -> None:
    settings = Settings(allow_http_inputs=True, url_allowlist="127.0.0.0/8")
    assert check_url("http://127.0.0.1:8000/x", settings).port == 8000


def test_s3_url_is_split_into_bucket_and_key() -> None:
    target = check_url("s3://my-bucket/dir/sub/key.png", HTTPS_ONLY)
    assert (target.scheme, target.bucket, target.key) == ("s3", "my-bucket", "dir/sub/key.png")


def test_data_uri_is_recognised() -> None:
    assert check_url("data:image/png;base64,iVBORw0KGgo=", HTTPS_ONLY).scheme == "data"


@pytest.mark.parametrize("url", ["s3://bucket/key.png", "data:image/png;base64,AAAA"])
def test_http_only_refuses_other_schemes(url: str) -> None:
    with pytest.raises(JobError) as info:
        check_url(url, HTTPS_ONLY, http_only=True)
    assert info.value.code is ErrorCode.INPUT_FORBIDDEN_URL


class StubResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


RESOLVER = StubResolver(
    {
        "loopback.test": ["127.0.0.1"],
        "metadata.test": ["169.254.169.254"],
        "private.test": ["10.1.2.3"],
        "cgnat.test": ["100.64.1.2"],
        "zero.test": ["0.0.0.0"],
        "mapped.test": ["::ffff:127.0.0.1"],
        "v6local.test": ["fe80::1"],
        "mixed.test": ["93.184.216.34", "192.168.0.10"],
        "public.test": ["93.184.216.34", "2606:4700:4700::1111", "93.184.216.34"],
    }
)


@pytest.mark.parametrize(
    "host",
    [
        "loopback.test",
        "metadata.test",
        "private.test",
        "cgnat.test",
        "zero.test",
        "mapped.test",
        "v6local.test",
        "mixed.test",  # one bad answer spoils the name
    ],
)
def test_hostnames_resolving_to_blocked_addresses_are_refused(host: str) -> None:
    with pytest.raises(JobError) as info:
        resolve_checked(host, 443, [], RESOLVER)
    assert info.value.code is ErrorCode.INPUT_FORBIDDEN_URL


def test_public_hostname_resolves_to_checked_unique_addresses() -> None:
    assert resolve_checked("public.test", 443, [], RESOLVER) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:4700:4700::1111"),
    ]


def test_allowlist_applies_to_resolved_addresses() -> None:
    assert resolve_checked("loopback.test", 80, ["127.0.0.0/8"], RESOLVER) == [
        ipaddress.ip_address("127.0.0.1")
    ]


def test_unknown_host_raises_resolver_error() -> None:
    with pytest.raises(OSError):
        resolve_checked("nxdomain.test", 443, [], RESOLVER)


def test_ip_literal_skips_the_resolver() -> None:
    resolver = StubResolver({})
    assert resolve_checked("8.8.8.8", 443, [], resolver) == [ipaddress.ip_address("8.8.8.8")]
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://u:p@files.example.com/a/b.png?X-Amz-Signature=abc#f",
            "https://files.example.com/a/b.png",
        ),
        ("http://[::1]:8080/x?token=1", "http://[::1]:8080/x"),
        ("data:image/png;base64,AAAA", "data:…"),
    ],
)
def test_redact_url_drops_credentials_and_query(url: str, expected: str) -> None:
    assert redact_url(url) == expected
