"""Key derivation and HMAC helpers shared by the dispatcher, the receiver and local storage."""

from __future__ import annotations

import base64
import hashlib
import hmac


def derive_key(master: str, purpose: str, subject: str) -> bytes:
    """A 32-byte key bound to one purpose and subject, so no derived key opens anything else."""
    return hmac.new(
        master.encode("utf-8"), f"{purpose}\x00{subject}".encode(), hashlib.sha256
    ).digest()


def callback_key(master: str, job_id: str) -> bytes:
    """The per-job key the worker signs its callback with (given in auth.callback_hmac)."""
    return derive_key(master, "callback", job_id)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hmac_b64(key: bytes, message: bytes) -> str:
    return b64(hmac.new(key, message, hashlib.sha256).digest())


def hmac_urlsafe(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def equal(a: str, b: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
