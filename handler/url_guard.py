"""URL policy for everything the worker fetches or uploads to, and an HTTP client that obeys it.

Two layers:

* `check_url` / `check_ip` / `resolve_checked` are pure: scheme rules, credentials in URLs,
  malformed or numeric-trick hosts, and the address policy (private, loopback, link-local,
  multicast, reserved, unspecified, CGNAT, cloud metadata, IPv4 embedded in IPv6), with the
  resolver injected so tests need no network.
* `make_http_client` builds an httpx client whose network backend resolves each host once,
  checks every answer and then connects to exactly the address it checked. Checking in one place
  and connecting elsewhere would let a DNS-rebinding server answer "public" to the check and
  "169.254.169.254" to the connect. Because only the TCP connect is redirected, the request's
  Host header, TLS SNI and certificate check still use the hostname. Redirects are not followed
  by the client: callers follow them by hand so every hop passes `check_url` again, and every
  hop's connection passes the address check because it goes through the same backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from handler.errors import ErrorCode, JobError
from handler.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""Blocking `(host, port) -> addresses`; the default is `system_resolve` (getaddrinfo)."""

Scheme = Literal["https", "http", "s3", "data"]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Ranges refused on top of what `ipaddress` flags as non-global. CGNAT is not "private" to
# Python; the metadata addresses are covered by link-local / ULA already but are listed so the
# rule survives a change in those definitions. IPv4 inside IPv6 is unwrapped in is_blocked.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # CGNAT (RFC 6598)
        "169.254.169.254/32",  # AWS/GCP/Azure metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


class ForbiddenAddress(JobError):
    """INPUT_FORBIDDEN_URL for an address (raised by check_ip, also from inside the client)."""

    def __init__(self, message: str = "URL resolves to a non-public address") -> None:
        super().__init__(ErrorCode.INPUT_FORBIDDEN_URL, message)


class ResolveError(httpcore.ConnectError):
    """The host name did not resolve (httpx re-raises it as ConnectError from this)."""


@dataclass(frozen=True)
class ParsedTarget:
    """A URL that passed the scheme/syntax policy. Hosts are IDNA (ASCII), lower case."""

    scheme: Scheme
    url: str
    host: str = ""  # http(s): hostname or IP literal without brackets
    port: int = 0  # http(s): explicit or default port
    bucket: str = ""  # s3
    key: str = ""  # s3, taken literally (no percent-decoding), like the AWS CLI

    @property
    def safe_url(self) -> str:
        """The URL without credentials, query or fragment: fit for messages and logs."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """Drop userinfo, query string and fragment (signed tokens live there)."""
    if url[:5].lower() == "data:":
        return "data:…"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _forbidden(message: str, url: str | None = None) -> JobError:
    text = message if url is None else f"{message}: {redact_url(url)}"
    return JobError(ErrorCode.INPUT_FORBIDDEN_URL, text)


def allowed_schemes(settings: Settings) -> frozenset[str]:
    """Schemes for HTTP fetches and uploads; http only when the operator allows it."""
    return frozenset({"https", "http"} if settings.allow_http_inputs else {"https"})


def check_url(url: str, settings: Settings, *, http_only: bool = False) -> ParsedTarget:
    """Apply the scheme and syntax policy; IP-literal hosts are address-checked too.

    Hostnames are not resolved here (that happens at connect time, see module doc).
    `http_only` refuses s3:// and data: (used for redirect targets and upload URLs).
    Raises JobError(INPUT_FORBIDDEN_URL).
    """
    colon = url.find(":", 0, 16)  # schemes are short; data: URIs can be megabytes
    scheme = url[:colon].lower() if colon > 0 else ""
    if scheme == "data" and not http_only:
        return ParsedTarget(scheme="data", url=url)
    if scheme == "s3" and not http_only:
        return _check_s3(url)
    if scheme in ("http", "https"):
        if scheme not in allowed_schemes(settings):
            raise _forbidden("http:// inputs are not allowed (use https://)", url)
        return _check_http(url, "https" if scheme == "https" else "http", settings)
    shown = scheme or "none"
    raise _forbidden(f"URL scheme {shown!r} is not allowed", url if scheme else None)


def _check_s3(url: str) -> ParsedTarget:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _forbidden("malformed s3:// URL") from None
    if "@" in parts.netloc:
        raise _forbidden("credentials are not allowed in URLs", url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key or parts.query or parts.fragment:
        raise _forbidden("s3 URLs must look like s3://bucket/key", url)
    return ParsedTarget(scheme="s3", url=url, bucket=bucket, key=key)


def _check_http(url: str, scheme: Literal["http", "https"], settings: Settings) -> ParsedTarget:
    try:
        # Parse with httpx so the host checked is the host the client will connect to.
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError):
        raise _forbidden("malformed URL") from None
    if parsed.userinfo:
        raise _forbidden("credentials are not allowed in URLs", url)
    host = parsed.raw_host.decode("ascii").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise _forbidden("URL has no host", url)
    if port is not None and not 0 < port < 65536:
        raise _forbidden("URL port is out of range", url)
    ip = _parse_ip(host)
    if ip is not None:
        try:
            check_ip(ip, settings.url_allowlist)
        except ForbiddenAddress:
            raise _forbidden("URL points to a non-public address", url) from None
    elif not _HOSTNAME.match(host):
        raise _forbidden("URL host is not a valid hostname", url)
    elif _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        # "127.1", "2130706433", "0x7f.1": the OS resolver reads these as IPv4 addresses.
        raise _forbidden("numeric hosts must be dotted-quad IPv4 addresses", url)
    default_port = 443 if scheme == "https" else 80
    return ParsedTarget(scheme=scheme, url=url, host=host, port=port or default_port)


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.replace("%25", "%"))
    except ValueError:
        return None


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address behind a 6to4 or Teredo address, if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_blocked(ip: IPAddress) -> bool:
    """True when the address is not a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True  # zone-scoped addresses are link-local by construction
        # IPv4-mapped and NAT64 addresses reach exactly their IPv4 address: judge that.
        if ip.ipv4_mapped is not None:
            return is_blocked(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_blocked(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        inner = _embedded_v4(ip)
        if inner is not None and is_blocked(inner):
            return True
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version)
    )


def check_ip(ip: IPAddress | str, allowlist: Iterable[str] = ()) -> IPAddress:
    """Return the address if it may be contacted, else raise ForbiddenAddress.

    The allow-list (CIDRs from settings.url_allowlist) wins over every other rule; an
    IPv4-mapped IPv6 address also matches IPv4 entries.
    """
    addr = _parse_ip(ip) if isinstance(ip, str) else ip
    if addr is None:
        raise ForbiddenAddress("not an IP address")
    candidates: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        candidates.append(addr.ipv4_mapped)
    networks = _networks(tuple(allowlist))
    for cand in candidates:
        if any(cand.version == net.version and cand in net for net in networks):
            return addr
    if is_blocked(addr):
        raise ForbiddenAddress()
    return addr


def resolve_checked(
    host: str, port: int, allowlist: Iterable[str], resolve: Resolver
) -> list[IPAddress]:
    """Resolve `host` and check every answer; refuse if any answer is blocked.

    Refusing on any blocked answer (rather than skipping it) stops a name that mixes a public and
    a private address from being used at all. Raises JobError(INPUT_FORBIDDEN_URL), or OSError
    when the name does not resolve.
    """
    literal = _parse_ip(host)
    if literal is not None:
        return [check_ip(literal, allowlist)]
    answers = list(dict.fromkeys(resolve(host, port)))
    if not answers:
        raise socket.gaierror(socket.EAI_NONAME, "no addresses")
    allow = tuple(allowlist)
    return [check_ip(answer, allow) for answer in answers]


def system_resolve(host: str, port: int) -> list[str]:
    """getaddrinfo, TCP answers only, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that connects only to addresses that passed `check_ip`.

    httpcore hands us the URL's host; we resolve it once, check the answers and open the TCP
    connection to the checked address itself, so no second lookup can be rebound. TLS is then
    started by httpcore with server_hostname = the original host (SNI and certificate check
    unchanged).
    """

    def __init__(
        self,
        allowlist: Iterable[str],
        resolve: Resolver = system_resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allowlist = tuple(allowlist)
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(
                asyncio.to_thread(resolve_checked, host, port, self._allowlist, self._resolve),
                timeout,
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise ResolveError(f"could not resolve {host}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport using `GuardedNetworkBackend`.

    httpx 0.28 has no public hook for the network backend, so the connection pool it builds is
    replaced by an equivalent one that uses ours (httpx is pinned; a test covers this).
    """

    def __init__(
        self,
        allowlist: Iterable[str],
        resolve: Resolver = system_resolve,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        context = ssl_context or httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=context, trust_env=False)
        limits = limits or httpx.Limits(max_connections=20, max_keepalive_connections=10)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(allowlist, resolve),
        )


class GuardedClient(httpx.AsyncClient):
    """An AsyncClient built by `make_http_client` (type marker: its transport is guarded)."""


def make_http_client(
    settings: Settings,
    *,
    resolve: Resolver | None = None,
    timeout: httpx.Timeout | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> GuardedClient:
    """An AsyncClient that only reaches addresses the policy allows and never follows redirects.

    Use it for inputs, output PUTs and callbacks alike. trust_env=False: a proxy from the
    environment would bypass the address check.
    """
    transport = GuardedTransport(
        settings.url_allowlist, resolve or system_resolve, ssl_context=ssl_context
    )
    return GuardedClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=timeout
        or httpx.Timeout(settings.fetch_read_timeout_s, connect=settings.fetch_connect_timeout_s),
    )
