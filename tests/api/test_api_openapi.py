"""/openapi.json describes exactly the routes the app serves."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from api_stub.app import create_app
from api_stub.services import Services
from api_stub.settings import ApiSettings


def _route_table(settings: ApiSettings, services: Services) -> set[tuple[str, str]]:
    app = create_app(settings, services=services)
    table = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                table.add((method.lower(), path))
    return table


async def test_document_matches_routes(
    client: httpx.AsyncClient, settings: ApiSettings, services: Services
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _route_table(settings, services)


async def test_every_reference_resolves(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', str(doc).replace("'", '"'))
    assert refs
    for name in refs:
        assert name in doc["components"]["schemas"], name
    create = doc["paths"]["/api/jobs"]["post"]
    assert {"201", "402", "422", "429"} <= set(create["responses"])
    # Every route with a JSON body documents the size and media-type refusals.
    for path in ("/api/jobs", "/api/jobs/batch", "/api/uploads", "/api/webhooks/runpod"):
        assert {"413", "415"} <= set(doc["paths"][path]["post"]["responses"]), path
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    job_types = doc["components"]["schemas"]["CreateJob"]["properties"]["type"]["enum"]
    assert "bg_remove" in job_types and "upscale_2k" in job_types
