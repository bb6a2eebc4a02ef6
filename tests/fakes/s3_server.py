"""moto's standalone S3 server on 127.0.0.1 and a free port, for real boto3 round trips.

    with moto_s3_server() as s3:
        s3.create_bucket("inputs")
        settings = s3.settings(allow_http_inputs=True)

moto keeps its state per process, so tests should use their own bucket names (`unique_bucket`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from botocore.config import Config

from handler.settings import Settings

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any key pair
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str

    def settings(self, **overrides: Any) -> Settings:
        """Worker settings pointing at this server (path-style, fixed test credentials)."""
        values: dict[str, Any] = {
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_addressing_style": "path",
        }
        values.update(overrides)
        return Settings(**values)

    def client(self) -> Any:
        """A boto3 client for arranging and checking test state."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or unique_bucket()
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def reset(self) -> None:
        """Drop every bucket (moto's reset API)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset").raise_for_status()


def unique_bucket(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def moto_s3_server() -> Iterator[MotoS3]:
    from moto.server import ThreadedMotoServer  # heavy import, only when a test needs it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
