"""Structured (JSON lines) logging for the control plane's processes.

Call `configure_logging` once from an entry point; library modules only log with `extra=`.
"""

from __future__ import annotations

from handler.logs import JsonFormatter, configure

__all__ = ["JsonFormatter", "configure_logging"]


def configure_logging(level: str = "INFO") -> None:
    """The worker's JSON-lines setup (it also quiets httpx, whose URLs carry signatures)."""
    configure(level)
