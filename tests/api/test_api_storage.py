"""Storage providers: local HMAC-signed URLs served by the app, and S3 presigned POST/GET
against moto's standalone server."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api_helpers import auth

from api_stub.auth import NewUser
from api_stub.storage import LocalStorage, S3Storage, SignatureError, key_in_prefix, make_s3_client
from api_stub.testing.fake_runpod import tiny_png

PREFIX = "outputs/u1/j1/"


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("s3://bucket/outputs/u1/j1/out-0.png", "outputs/u1/j1/out-0.png"),
        ("https://s3.example.com/bucket/outputs/u1/j1/a.webp?X-Amz=1", "outputs/u1/j1/a.webp"),
        ("https://bucket.s3.amazonaws.com/outputs/u1/j1/a.png", "outputs/u1/j1/a.png"),
        ("http://api/storage/files/outputs/u1/j1/out-0.png", "outputs/u1/j1/out-0.png"),
        ("http://api/storage/files/outputs%2Fu1%2Fj1%2Fx.png", "outputs/u1/j1/x.png"),
        ("s3://bucket/outputs/u1/j2/out-0.png", None),  # another job
        ("s3://bucket/outputs/u2/j1/out-0.png", None),  # another user
        ("s3://bucket/outputs/u1/j1/../../u2/j9/x.png", None),
        ("s3://bucket/outputs/u1/j1/", None),
        ("not a url", None),
    ],
)
def test_key_in_prefix(url: str, key: str | None) -> None:
    assert key_in_prefix(url, PREFIX) == key


def test_local_signatures_bind_key_expiry_and_method(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, base_url="http://api", signing_key=b"k" * 32)
    now = time.time()
    url = storage.presign_get("outputs/u1/j1/a.png", ttl_s=60, now=now)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    storage.check_get("outputs/u1/j1/a.png", exp=query["exp"], sig=query["sig"], now=now)
    with pytest.raises(SignatureError):
        storage.check_get("outputs/u1/j1/b.png", exp=query["exp"], sig=query["sig"], now=now)
    with pytest.raises(SignatureError):
        storage.check_get("outputs/u1/j1/a.png", exp=query["exp"], sig=query["sig"], now=now + 61)
    with pytest.raises(SignatureError):
        storage.check_get(
            "outputs/u1/j1/a.png", exp=str(int(query["exp"]) + 999), sig=query["sig"], now=now
        )
    prefix_url = storage.output_prefix(PREFIX, ttl_s=60, now=now)
    put = {k: v[0] for k, v in parse_qs(urlsplit(prefix_url).query).items()}
    storage.check_put(
        PREFIX + "out.png", prefix=put["prefix"], exp=put["exp"], sig=put["sig"], now=now
    )
    with pytest.raises(SignatureError):  # outside the signed prefix
        storage.check_put(
            "outputs/u1/j2/out.png", prefix=put["prefix"], exp=put["exp"], sig=put["sig"], now=now
        )
    with pytest.raises(SignatureError):  # a GET signature does not allow a PUT
        storage.check_put(
            "outputs/u1/j1/a.png",
            prefix="outputs/u1/j1/a.png",
            exp=query["exp"],
            sig=query["sig"],
            now=now,
        )
    with pytest.raises(SignatureError):
        storage.path_for("outputs/../../etc/passwd")


async def test_local_upload_form_enforces_type_and_size(
    client: httpx.AsyncClient, alice: NewUser
) -> None:
    grant = await client.post(
        "/api/uploads",
        json={"content_type": "image/png", "content_length": 100},
        headers=auth(alice),
    )
    assert grant.status_code == 201
    form = grant.json()
    assert form["key"].startswith(f"uploads/{alice.user.id}/") and form["input"] == {
        "key": form["key"]
    }
    assert 300 <= form["expires_at"] - time.time() <= 600
    png = tiny_png()
    upload = await client.post(
        "/storage/upload", data=form["fields"], files={"file": ("a.png", png, "image/png")}
    )
    assert upload.status_code == 204
    not_png = await client.post(
        "/storage/upload", data=form["fields"], files={"file": ("a.png", b"<svg/>", "image/png")}
    )
    assert not_png.status_code == 415
    forged = {**form["fields"], "Content-Type": "text/html"}
    assert (
        await client.post("/storage/upload", data=forged, files={"file": ("a", png)})
    ).status_code == 403
    other_key = {**form["fields"], "key": form["key"].replace("uploads/", "outputs/")}
    assert (
        await client.post("/storage/upload", data=other_key, files={"file": ("a", png)})
    ).status_code == 403


async def test_upload_request_limits(client: httpx.AsyncClient, alice: NewUser) -> None:
    svg = await client.post(
        "/api/uploads", json={"content_type": "image/svg+xml"}, headers=auth(alice)
    )
    assert svg.status_code == 415
    huge = await client.post(
        "/api/uploads",
        json={"content_type": "image/png", "content_length": 10**9},
        headers=auth(alice),
    )
    assert huge.status_code == 413
    assert (
        await client.post("/api/uploads", json={"content_type": "image/png"})
    ).status_code == 401


async def test_local_upload_larger_than_the_policy_is_refused(
    client_for: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], alice: NewUser
) -> None:
    async with client_for(upload_max_bytes=50) as http:
        grant = await http.post(
            "/api/uploads", json={"content_type": "image/png"}, headers=auth(alice)
        )
        form = grant.json()
        big = await http.post(
            "/storage/upload", data=form["fields"], files={"file": ("a.png", tiny_png())}
        )
    assert len(tiny_png()) > 50
    assert big.status_code == 413


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_presigned_post_and_get(moto_s3: str) -> None:
    client = make_s3_client(
        endpoint_url=moto_s3,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
        addressing_style="path",
    )
    client.create_bucket(Bucket="simplypng")
    storage = S3Storage(client, "simplypng")
    now = time.time()
    post = storage.presign_upload(
        "uploads/u1/a.png", content_type="image/png", max_bytes=1000, ttl_s=600, now=now
    )
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    # Real S3 enforces these conditions (moto stores the object without checking them).
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 590 <= expires.timestamp() - now <= 610
    png = tiny_png()
    response = httpx.post(post.url, data=post.fields, files={"file": ("a.png", png, "image/png")})
    assert response.status_code == 204
    download = httpx.get(storage.presign_get("uploads/u1/a.png", ttl_s=300, now=now))
    assert download.status_code == 200 and download.content == png
    assert (
        storage.output_prefix("outputs/u1/j1/", ttl_s=60, now=now)
        == "s3://simplypng/outputs/u1/j1/"
    )


def test_s3_worker_and_user_urls_can_use_different_endpoints(moto_s3: str) -> None:
    def client(endpoint: str) -> object:
        return make_s3_client(
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",
            addressing_style="path",
        )

    public_endpoint = moto_s3.replace("127.0.0.1", "localhost")
    internal = client(moto_s3)
    internal.create_bucket(Bucket="split")  # type: ignore[attr-defined]
    internal.put_object(Bucket="split", Key="uploads/u1/a.png", Body=b"png")  # type: ignore[attr-defined]
    storage = S3Storage(client(public_endpoint), "split", worker_client=internal)
    user_url = storage.presign_get("uploads/u1/a.png", ttl_s=60, now=time.time())
    worker_url = storage.input_url("uploads/u1/a.png", ttl_s=60, now=time.time())
    assert urlsplit(user_url).hostname == "localhost"
    assert urlsplit(worker_url).hostname == "127.0.0.1"
    assert httpx.get(user_url).content == httpx.get(worker_url).content == b"png"
