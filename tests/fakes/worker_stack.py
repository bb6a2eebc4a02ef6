"""Test wiring for the real worker pipeline: tiny models, a callback receiver, payloads.

Used by the end-to-end tests and by the demo's `--double` mode. Nothing here replaces worker
code: the handler, the node pack and the model loaders all run for real.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.fakes.real_models import install_u2netp
from tests.fakes.tiny_models import (
    birefnet_lock_entries,
    build_big_lama,
    build_birefnet_standin,
    build_tiny_esrgan,
    lock_entry,
    write_lock,
)

BIREFNET_DIR = "birefnet/birefnet-general"
LAMA_DEST = "inpaint/big-lama.pt"
ESRGAN_DEST = "upscale_models/RealESRGAN_x4plus.pth"


def build_tiny_models(models_dir: Path, *, lama_source: Path | None = None) -> Path:
    """Build every model the workflows use under `models_dir` and a models.lock for them.

    `lama_source`: an already built full-size LaMa to copy (it takes seconds to build).
    The real u2netp is added (with its real lock entry) when scripts/bootstrap.sh fetched it.
    Returns the lock path.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    build_birefnet_standin(models_dir / BIREFNET_DIR)
    lama = models_dir / LAMA_DEST
    if lama_source is not None and lama_source.exists():
        lama.parent.mkdir(parents=True, exist_ok=True)
        if not lama.exists():
            shutil.copyfile(lama_source, lama)
    else:
        build_big_lama(lama)
    build_tiny_esrgan(models_dir / ESRGAN_DEST, scale=4)
    entries = [
        *birefnet_lock_entries(models_dir, BIREFNET_DIR),
        lock_entry(
            lama, model="big-lama", dest=LAMA_DEST, tasks=("object_remove",), licence="Apache-2.0"
        ),
        lock_entry(
            models_dir / ESRGAN_DEST,
            model="realesrgan-x4plus",
            dest=ESRGAN_DEST,
            tasks=("upscale_2k",),
            licence="BSD-3-Clause",
        ),
    ]
    u2netp = install_u2netp(models_dir)
    if u2netp is not None:
        entries.append(u2netp)
    return write_lock(models_dir / "models.lock", entries)


def standard_webhooks_accept(body: bytes, headers: Mapping[str, str], key: bytes) -> bool:
    """Whether the `standardwebhooks` library (what receivers use) accepts this signed body."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    secret = "whsec_" + base64.b64encode(key).decode()
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def callback_key() -> tuple[bytes, str]:
    key = os.urandom(32)
    return key, base64.b64encode(key).decode()


def payload(
    job_type: str,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    output_prefix: str | None = None,
    webhook_url: str | None = None,
    callback_hmac: str | None = None,
    timeout_s: int = 60,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "type": job_type,
        "params": {"v": 1, **(params or {})},
        "inputs": [{"url": url}],
        "output_prefix": output_prefix,
        "webhook_url": webhook_url,
        "auth": {"callback_hmac": callback_hmac} if callback_hmac else None,
        "timeout_s": timeout_s,
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode()}"


def decode_json(body: bytes) -> dict[str, Any]:
    return json.loads(body.decode())
