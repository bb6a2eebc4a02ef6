"""Structured (JSON lines) logging for the control plane's processes.

Call `configure_logging` once from an entry point; library modules only log with `extra=`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from api_stub.settings import ApiSettings
from handler.logs import JsonFormatter, configure

__all__ = ["JsonFormatter", "configure_logging", "redact_url", "settings_for_log"]

REDACTED = "***"
# Query parameters that carry credentials in database and endpoint URLs.
_SECRET_QUERY = frozenset({"password", "sslpassword", "token", "key", "api_key", "secret"})


def configure_logging(level: str = "INFO") -> None:
    """The worker's JSON-lines setup (it also quiets httpx, whose URLs carry signatures)."""
    configure(level)


def settings_for_log(settings: ApiSettings, names: Iterable[str]) -> dict[str, Any]:
    """The named settings, safe to log: secrets show only whether they are set, and URLs
    lose their passwords (DATABASE_URL may hold one)."""
    return {name: _safe(name, getattr(settings, name)) for name in names}


def _safe(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, list) and any(isinstance(item, SecretStr) for item in value):
        return [REDACTED] * len(value)
    if isinstance(value, str) and (name.endswith("_url") or "://" in value):
        return redact_url(value)
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    return str(value)  # paths, dicts of costs: plain text


def redact_url(url: str) -> str:
    """`url` without the password of its user part or any credential query parameter."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(k.lower() in _SECRET_QUERY for k, _ in pairs)
    if ":" not in parts.netloc.rpartition("@")[0] and not secret_query:
        return url  # nothing to hide (and sqlite:/// keeps its three slashes)
    userinfo, at, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}:{REDACTED}@{host}" if at and ":" in userinfo else parts.netloc
    query = urlencode(
        [(k, REDACTED if k.lower() in _SECRET_QUERY else v) for k, v in pairs], safe="*"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
