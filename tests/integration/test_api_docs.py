"""The API's own documentation: Swagger UI and ReDoc served with their scripts from the package
(they work offline), and an OpenAPI document that declares the error body the server sends."""

from __future__ import annotations

import re

import pytest
from test_server_support import API, app_client, settings_for


@pytest.fixture
def client(tmp_path):
    with app_client(settings_for(None, tmp_path)) as client:
        yield client


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_api_doc_pages_load_every_asset_from_the_server(client, page):
    html = client.get(f"{API}/{page}")
    assert html.status_code == 200, html.text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert urls and not [u for u in urls if re.match(r"(https?:)?//", u)], urls
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, urls
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert client.get(f"{API}/openapi.json").status_code == 200


def test_every_error_status_is_declared_with_the_body_the_server_sends(client):
    document = client.get(f"{API}/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("401", "404", "409", "413", "422", "503", "default"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)
    upload = document["paths"][f"{API}/sessions/{{session_id}}/documents"]["post"]
    assert "415" in upload["responses"]
    # The body the server really sends for bad input has that shape.
    refused = client.get(f"{API}/sessions", params={"limit": "many"})
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "invalid" and body["detail"][0]["field"] == "limit"
    assert set(body) <= set(document["components"]["schemas"]["ErrorBody"]["properties"])
